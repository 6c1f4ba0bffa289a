//! Reading the PNGs `ras` writes (shared by the CLI tests).

use std::path::Path;

/// The RGB bytes of a PNG and its `parameters` text chunk ("" if none).
pub fn read_png(path: &Path) -> (Vec<u8>, String) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let text = reader
        .info()
        .uncompressed_latin1_text
        .iter()
        .find(|t| t.keyword == "parameters");
    (buf, text.map(|t| t.text.clone()).unwrap_or_default())
}
