//! Host selectors (`deploy::HostSelector`): a pattern is refused or
//! compiled, never a panic, and a compiled one matches a host name only
//! whole: the same answer as the pattern wrapped in `^(?:...)$`, wherever
//! that wrapping means the same (no `#`, which starts a comment in `(?x)`
//! mode and would swallow the wrapper's end).
//!
//! The input: the pattern, then a newline, then the host name.
#![no_main]

use deploy::{HostName, HostSelector};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, host) = text.split_once('\n').unwrap_or((text, "web-1"));
    let Ok(selector) = HostSelector::parse(pattern) else {
        return;
    };
    // Its text and its JSON form (bus messages, the API) read back the same.
    assert_eq!(selector.as_str(), pattern);
    let again = HostSelector::parse(selector.to_string()).expect("a selector's own text parses");
    assert_eq!(again, selector);
    let json = serde_json::to_string(&selector).expect("serializes");
    let back: HostSelector = serde_json::from_str(&json).expect("its JSON reads back");
    assert_eq!(back, selector);

    let Ok(host) = HostName::parse(host) else {
        return;
    };
    let matched = selector.matches(&host);
    assert_eq!(again.matches(&host), matched);
    if pattern.contains('#') {
        return;
    }
    let wrapped = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 22)
        .dfa_size_limit(1 << 22)
        .build();
    if let Ok(reference) = wrapped {
        assert_eq!(
            matched,
            reference.is_match(host.as_str()),
            "pattern {pattern:?} on host {:?}",
            host.as_str()
        );
    }
});
