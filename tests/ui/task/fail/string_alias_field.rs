// An alias hides `String` from the macro; the type check still points at the field.
type Text = String;

#[aqueduct::task]
struct Note {
    id: u64,
    text: Text,
}

fn main() {}
