//! deploy-poll's release tag order on arbitrary tags: a total order (antisymmetric,
//! transitive, equal only for the same tag), so sorting tags never panics nor picks a release
//! that depends on the order git listed them in.

#![no_main]

use std::cmp::Ordering;

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/deploy-poll/src/version.rs"]
mod version;

use version::Version;

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    let tags: Vec<Version> = text.split('\n').take(3).map(Version::parse).collect();
    for a in &tags {
        assert_eq!(a.cmp(a), Ordering::Equal);
        for b in &tags {
            assert_eq!(a.cmp(b), b.cmp(a).reverse(), "{:?} vs {:?}", a.tag, b.tag);
            assert_eq!(
                a.cmp(b) == Ordering::Equal,
                a.tag == b.tag,
                "{:?} vs {:?}",
                a.tag,
                b.tag
            );
            for c in &tags {
                if a <= b && b <= c {
                    assert!(
                        a <= c,
                        "{:?} <= {:?} <= {:?} but not {:?} <= {:?}",
                        a.tag,
                        b.tag,
                        c.tag,
                        a.tag,
                        c.tag
                    );
                }
            }
        }
    }
});
