// Stages named by path, from other modules.
mod stages {
    #[aqueduct::task]
    pub struct Image {
        pub id: u64,
    }

    #[aqueduct::handler]
    pub fn decode(image: &mut Image) {
        image.id += 1;
    }

    pub mod post {
        #[aqueduct::handler]
        pub fn resize(image: &mut super::Image) {
            image.id += 1;
        }
    }
}

fn main() {
    let _ = aqueduct::flow!(stages::decode -> stages::post::resize -> crate::stages::decode);
}
