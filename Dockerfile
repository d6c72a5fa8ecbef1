# churnwatch worker image. Build: docker build -t churnwatch .
# Installs exactly the locked dependency set (uv.lock), with the same hash-pinned uv as bin/bootstrap.sh.
FROM python:3.11-slim
WORKDIR /app
COPY bin/uv-requirements.txt bin/uv-requirements.txt
RUN pip install --no-cache-dir --require-hashes -r bin/uv-requirements.txt
ENV UV_PROJECT_ENVIRONMENT=/app/.venv UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
# Dependencies first (their own layer, rebuilt only when the lock changes), then the project.
COPY pyproject.toml uv.lock README.md LICENSE ./
RUN uv sync --locked --no-cache --no-install-project
COPY stream ./stream
COPY rules ./rules
COPY alerts ./alerts
RUN uv sync --locked --no-cache --no-editable
ENV PATH=/app/.venv/bin:$PATH CHURNWATCH_WEB_HOST=0.0.0.0
EXPOSE 6066
ENTRYPOINT ["churnwatch"]
CMD ["worker"]
