# `ras serve` in a container, on a Vulkan host.
#
#   docker build -t ras .
#   # AMD / Intel GPUs (Mesa's Vulkan drivers are in the image):
#   docker run --rm -p 7860:7860 --device /dev/dri -e RAS_API_KEY=change-me-please ras
#   # NVIDIA GPUs (NVIDIA Container Toolkit; "graphics" mounts the Vulkan driver):
#   docker run --rm -p 7860:7860 --gpus all -e RAS_API_KEY=change-me-please ras
#   # No GPU: the image falls back to lavapipe (software Vulkan; slow, for trying it out).
#
# Other models: mount a diffusers folder and name it, e.g.
#   -v /data/sd3:/models/sd3:ro ras --model /models/sd3
# Without RAS_API_KEY the server refuses to listen on 0.0.0.0 (see README.md).

FROM rust:1-bookworm AS build
WORKDIR /opt/ras
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY shaders shaders
COPY models/ras-demo models/ras-demo
COPY examples examples
COPY tests tests
RUN cargo build --release --locked --bin ras

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libvulkan1 mesa-vulkan-drivers ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
# The demo model sits where the binary was built to find it.
COPY --from=build /opt/ras/models/ras-demo /opt/ras/models/ras-demo
COPY --from=build /opt/ras/target/release/ras /usr/local/bin/ras
ENV NVIDIA_DRIVER_CAPABILITIES=compute,graphics,utility \
    XDG_RUNTIME_DIR=/tmp/ras-xdg \
    RUST_LOG=info
RUN mkdir -m 700 /tmp/ras-xdg && useradd --system --uid 10001 ras && chown ras /tmp/ras-xdg
USER ras
EXPOSE 7860
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s CMD curl -fsS http://127.0.0.1:7860/readyz || exit 1
# SIGTERM (docker stop) drains: queued requests get 503, running ones get
# --shutdown-timeout seconds; give docker stop a longer --time than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["ras", "serve", "--host", "0.0.0.0", "--port", "7860", "--log-json"]
