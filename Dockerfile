# voxmail: multi-stage build → slim, non-root runtime. Data (SQLite database and audio) lives in /data.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY .cargo .cargo
COPY crates crates
COPY src src
COPY migrations migrations
COPY config config
COPY web web
RUN cargo build --release --locked && strip target/release/voxmail

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin voxmail \
    && mkdir -p /data && chown voxmail:voxmail /data
COPY --from=builder /src/target/release/voxmail /usr/local/bin/voxmail
ENV VOXMAIL_DATA_DIR=/data \
    VOXMAIL_HTTP__LISTEN=0.0.0.0:8080
USER voxmail
WORKDIR /data
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
    CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["voxmail"]
CMD ["serve"]
