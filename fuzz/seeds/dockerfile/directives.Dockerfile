# syntax=docker/dockerfile:1
# escape=`
ARG BASE=scratch
FROM --platform=wasi/wasm ${BASE} AS app
ARG GREETING="Hello" TARGETARCH
ENV GREETING=${GREETING:-hi} OTHER=${UNSET:+set} ARCH=$TARGETARCH
LABEL a=b `
      "c d"="e f"
WORKDIR /srv/${TARGETARCH}
COPY --chmod=0644 motd.txt static/ /etc/
COPY ["hello.wasm", "/app.wasm"]
ENTRYPOINT ["/app.wasm"]
CMD ["world", "${GREETING}"]
