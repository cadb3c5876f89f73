// A user enum is not plain data (most byte values are not a valid variant).
#[derive(Clone, Copy)]
enum Colour {
    Red,
    Green,
}

#[aqueduct::task]
struct Pixel {
    x: u8,
    colour: Colour,
}

fn main() {}
