fn main() {
    println!("{}", geoblock::programs::GEOBLOCK.len());
}
