FROM scratch
COPY static/*i*n*d*e*x*.*h*t*m*l* *.wasm /x/
COPY [[]*] static/[!]a-c]* /y/
ENTRYPOINT ["/hello.wasm"]
