#!/usr/bin/env bash
# Refresh the page's vendored libraries from the npm registry: `gql/web/vendor.sh` (the versions
# below), or `gql/web/vendor.sh graphql-ws@6.5.0 @auth0/auth0-spa-js@2.29.0` to move to others.
# Each package's browser ES-module build is copied as published (no bundler, no build step), with
# its licence and a VERSION file naming the exact package and its registry integrity hash.
# Needs node/npm; users of the page never do (the files are committed and served by the API).
set -euo pipefail
cd "$(dirname "$0")/static/vendor"

packages=("${@:-graphql-ws@6.4.2 @auth0/auth0-spa-js@2.28.3}")
read -r -a packages <<<"${packages[*]}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for spec in "${packages[@]}"; do
  name=${spec%@*}
  (cd "$work" && npm pack --silent "$spec" >/dev/null)
  tarball=$(ls "$work"/*.tgz)
  mkdir "$work/pkg"
  tar xzf "$tarball" -C "$work/pkg"
  src=$work/pkg/package
  version=$(node -p "require('$src/package.json').version")
  integrity=$(cd "$work" && npm view --silent "$name@$version" dist.integrity)
  case "$name" in
    graphql-ws)
      dest=graphql-ws
      rm -rf "$dest" && mkdir "$dest"
      cp "$src/dist/client.js" "$src/LICENSE.md" "$dest/"
      # client.js imports one shared chunk by a hashed name; copy whichever this version has.
      for chunk in $(grep -o "from '\./[^']*'" "$src/dist/client.js" | sed "s/from '\.\/\(.*\)'/\1/" | sort -u); do
        cp "$src/dist/$chunk" "$dest/"
      done
      ;;
    @auth0/auth0-spa-js)
      dest=auth0-spa-js
      rm -rf "$dest" && mkdir "$dest"
      cp "$src/dist/auth0-spa-js.production.esm.js" "$src/LICENSE" "$dest/"
      # The source map is not shipped: the page does not reference it.
      sed -i '/^\/\/# sourceMappingURL=/d' "$dest/auth0-spa-js.production.esm.js"
      ;;
    *) echo "vendor.sh: no recipe for $name" >&2; exit 1 ;;
  esac
  printf '%s@%s\n%s\n' "$name" "$version" "$integrity" >"$dest/VERSION"
  echo "vendored $name@$version into gql/web/static/vendor/$dest"
  rm -rf "$work/pkg" "$tarball"
done
