fn main() {
    println!("Hello from {{name}}!");
}
