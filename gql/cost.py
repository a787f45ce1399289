"""The cost of a GraphQL operation, counted in list items, refused before anything runs.

Aliases and depth are limited elsewhere, but they count fields, not work: fifteen aliased
`jobs(first: 100)` are fifteen fields and 1,500 jobs read and 3,000 URLs signed. Here each field
with a `first` argument costs `first` items (its schema default when omitted), times the `first`
of every list field around it; fragments count where they are spread. An operation over
`MAX_LIST_ITEMS` is refused during validation with a `BAD_USER_INPUT` error naming the limit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    NullValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    VariableNode,
    get_named_type,
)
from strawberry.extensions import SchemaExtension

# A page is at most 100 jobs (MAX_PAGE_SIZE); five full pages per operation is generous for any
# screen, and bounds one request's reads and URL signatures.
MAX_LIST_ITEMS = 500
PAGE_SIZE_ARGUMENT = "first"
# Digits of the largest GraphQL Int (2**31 - 1) and its sign.
INT_DIGITS = 11


class QueryCostLimiter(SchemaExtension):
    """Adds the cost rule for this operation (it needs the operation's variables)."""

    def __init__(self, *, max_items: int = MAX_LIST_ITEMS) -> None:
        self.max_items = max_items

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        rule = _cost_rule(self.max_items, variables=context.variables or {}, operation_name=context.operation_name)
        context.validation_rules = (*context.validation_rules, rule)
        yield


def _cost_rule(max_items: int, *, variables: Mapping[str, Any], operation_name: str | None) -> type[ValidationRule]:
    class QueryCostRule(ValidationRule):
        def __init__(self, validation_context: ValidationContext) -> None:
            super().__init__(validation_context)
            document = validation_context.document
            fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
            operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            if operation_name is not None:
                operations = [d for d in operations if d.name is not None and d.name.value == operation_name]
            for operation in operations:
                counter = _Counter(validation_context.schema, fragments, {**_variable_defaults(operation), **variables})
                root = _root_type(validation_context.schema, operation.operation)
                items = counter.count(operation.selection_set, root, multiplier=1, spread=frozenset())
                if items > max_items:
                    validation_context.report_error(
                        GraphQLError(
                            f"this operation may return up to {items} jobs; the limit is {max_items} per operation "
                            f"(the sum of `first` over every list, aliases included): ask for fewer or smaller pages",
                            operation,
                            extensions={"code": "BAD_USER_INPUT", "limit": max_items, "cost": items},
                        )
                    )

    return QueryCostRule


class _Counter:
    def __init__(
        self, schema: GraphQLSchema, fragments: Mapping[str, FragmentDefinitionNode], variables: Mapping[str, Any]
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables

    def count(
        self,
        selections: SelectionSetNode | None,
        parent: GraphQLNamedType | None,
        *,
        multiplier: int,
        spread: frozenset[str],
    ) -> int:
        """List items under `selections`; unknown fields and types count nothing (validation
        reports them), and a fragment already being expanded is not expanded again."""
        if selections is None:
            return 0
        total = 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                total += self._field(selection, parent, multiplier=multiplier, spread=spread)
            elif isinstance(selection, InlineFragmentNode):
                condition = (
                    self.schema.get_type(selection.type_condition.name.value) if selection.type_condition else parent
                )
                total += self.count(selection.selection_set, condition, multiplier=multiplier, spread=spread)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in spread:
                    continue
                condition = self.schema.get_type(fragment.type_condition.name.value)
                total += self.count(fragment.selection_set, condition, multiplier=multiplier, spread=spread | {name})
        return total

    def _field(
        self, node: FieldNode, parent: GraphQLNamedType | None, *, multiplier: int, spread: frozenset[str]
    ) -> int:
        if not isinstance(parent, GraphQLObjectType) or node.name.value not in parent.fields:
            return 0
        definition = parent.fields[node.name.value]
        child = get_named_type(definition.type)
        if PAGE_SIZE_ARGUMENT not in definition.args:
            return self.count(node.selection_set, child, multiplier=multiplier, spread=spread)
        size = self._page_size(node, definition.args[PAGE_SIZE_ARGUMENT].default_value)
        items = multiplier * size
        return items + self.count(node.selection_set, child, multiplier=items, spread=spread)

    def _page_size(self, node: FieldNode, default: object) -> int:
        """The field's `first`: a literal, a variable (or its default), else the schema default.
        A value that is not an integer counts as the default: the operation is refused anyway."""
        value: object = default
        argument = next((a for a in node.arguments or () if a.name.value == PAGE_SIZE_ARGUMENT), None)
        if argument is not None:
            if isinstance(argument.value, IntValueNode):
                value = _int_literal(argument.value)
            elif isinstance(argument.value, VariableNode):
                value = self.variables.get(argument.value.name.value, default)
            elif isinstance(argument.value, NullValueNode):
                value = default
        for candidate in (value, default):
            if isinstance(candidate, int) and not isinstance(candidate, bool):
                return max(candidate, 0)
        return 0


def _int_literal(node: IntValueNode) -> int:
    # GraphQL Ints are 32-bit (validation refuses bigger ones); a literal of thousands of digits
    # must not cost an int() conversion, or fail it (Python's limit on digits).
    return int(node.value) if len(node.value) <= INT_DIGITS else 2**31


def _variable_defaults(operation: OperationDefinitionNode) -> dict[str, Any]:
    return {
        definition.variable.name.value: _int_literal(definition.default_value)
        for definition in operation.variable_definitions or ()
        if isinstance(definition.default_value, IntValueNode)
    }


def _root_type(schema: GraphQLSchema, operation: OperationType) -> GraphQLObjectType | None:
    return {
        OperationType.QUERY: schema.query_type,
        OperationType.MUTATION: schema.mutation_type,
        OperationType.SUBSCRIPTION: schema.subscription_type,
    }[operation]
