//! Image references: any text parses or fails, never panics; what parses prints (in full
//! and in Docker's short form) as text that parses into the same reference.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmbuild_packer::Reference;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(reference) = input.parse::<Reference>() else {
        return;
    };
    for shown in [reference.to_string(), reference.familiar()] {
        match shown.parse::<Reference>() {
            Ok(again) => assert_eq!(again, reference, "{input:?} printed as {shown:?}"),
            Err(error) => panic!("{input:?} printed as {shown:?}, which does not parse: {error}"),
        }
    }
    let _ = reference.tag_or_digest();
    let _ = reference.without_digest().to_string();
    if let Some(tag) = &reference.tag {
        assert!(
            reference.with_tag(tag).is_ok(),
            "its own tag {tag:?} is refused"
        );
    }
});
