# churnwatch worker image. Build: docker build -t churnwatch .
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY rules ./rules
COPY alerts ./alerts
RUN pip install --no-cache-dir .
ENV CHURNWATCH_WEB_HOST=0.0.0.0
EXPOSE 6066
ENTRYPOINT ["churnwatch"]
CMD ["worker"]
