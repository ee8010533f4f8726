//! Error messages on one line: an error and its causes, each said once.

/// `error: cause: cause`, skipping a cause whose text the message before it already holds (many
/// errors put their source in their own message and also return it from `source()`, which would
/// print it twice).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot create folder /proc/nope: {source}")]
    struct Outer {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("reading input")]
    struct Plain {
        source: std::io::Error,
    }

    /// Issue 12: `cannot create folder /proc/nope: No such file or directory (os error 2): No
    /// such file or directory (os error 2)`.
    #[test]
    fn each_cause_is_said_once() {
        let io = || std::io::Error::from_raw_os_error(2);
        let text = chain(&Outer { source: io() });
        assert_eq!(text.matches("(os error 2)").count(), 1, "{text}");
        // A cause the message does not hold is added.
        let text = chain(&Plain { source: io() });
        assert!(
            text.starts_with("reading input: ") && text.contains("(os error 2)"),
            "{text}"
        );
    }
}
