# One image for every process of the real stack: `restoration migrate | api | worker | emulator`.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN useradd --create-home --uid 10001 restoration
COPY pyproject.toml README.md ./
COPY app.py settings.py ./
COPY gql ./gql
COPY tasks ./tasks
COPY comfy ./comfy
COPY storage ./storage
COPY models ./models
COPY workflows ./workflows
RUN pip install .
USER restoration
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz')" || exit 1
CMD ["restoration", "api", "--host", "0.0.0.0", "--port", "8000"]
