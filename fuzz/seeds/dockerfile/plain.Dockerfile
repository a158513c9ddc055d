from scratch
copy hello.wasm /hello.wasm
cmd ["a"]
