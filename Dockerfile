# syntax=docker/dockerfile:1
# Pipeline host: a static-ish release binary (profile `dist`: release + LTO) on a slim Debian
# base. The example plugins are built too and shipped in /opt/pipeline/plugins so they can be
# uploaded from inside the container.

FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN rustup target add wasm32-unknown-unknown
COPY . .
RUN cargo build --profile dist --locked -p pipeline-host --bin pipeline \
 && cargo build --release --locked --target wasm32-unknown-unknown \
        -p erc20-transfers -p passthrough -p address-watch -p uniswap-v3-swaps

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/pipeline --create-home pipeline
COPY --from=build /src/target/dist/pipeline /usr/local/bin/pipeline
COPY --from=build /src/target/wasm32-unknown-unknown/release/*.wasm /opt/pipeline/plugins/
USER pipeline
WORKDIR /var/lib/pipeline
# SQLite by default in the working directory's data/; set DATABASE_URL=postgres://… for production.
ENV PIPELINE_ADMIN_ADDR=0.0.0.0:8080 \
    PIPELINE_METRICS_ADDR=0.0.0.0:9090 \
    PIPELINE_LOG_FORMAT=json
VOLUME ["/var/lib/pipeline/data"]
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/pipeline"]
CMD ["serve"]
