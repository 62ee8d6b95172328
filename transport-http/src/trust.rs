//! Which URLs may receive credentials, OAuth metadata requests and tokens.

use std::net::IpAddr;

use reqwest::Url;

/// Whether `url`'s host is this machine by definition: `localhost`, an
/// address in `127.0.0.0/8`, or `::1`.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some(host) => {
            host.eq_ignore_ascii_case("localhost")
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// `https`, or plain `http` to a loopback host (where nothing crosses a
/// network).
pub(crate) fn is_secure(url: &Url) -> bool {
    url.scheme() == "https" || (url.scheme() == "http" && is_loopback(url))
}

/// Server-supplied text fit for an error message: control characters (which
/// could forge log lines or drive a terminal) become spaces, `secret` (if
/// the server echoes it) is masked, and at most `max` characters are kept.
pub(crate) fn excerpt(text: &str, secret: &str, max: usize) -> String {
    let text = if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, "<redacted>")
    };
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn loopback_hosts_are_localhost_127_slash_8_and_ipv6_one() {
        for loopback in [
            "http://localhost:1/",
            "http://LOCALHOST/",
            "http://127.0.0.1/",
            "http://127.9.8.7:80/",
            "http://[::1]:8080/",
        ] {
            assert!(is_loopback(&url(loopback)), "{loopback}");
        }
        for remote in [
            "http://0.0.0.0/",
            "http://10.0.0.1/",
            "http://localhost.example.com/",
            "http://[::ffff:127.0.0.1]/",
            "http://example.com/",
        ] {
            assert!(!is_loopback(&url(remote)), "{remote}");
        }
    }

    #[test]
    fn secure_is_https_anywhere_or_http_on_loopback() {
        assert!(is_secure(&url("https://example.com/token")));
        assert!(is_secure(&url("http://127.0.0.1:9/token")));
        assert!(!is_secure(&url("http://example.com/token")));
        assert!(!is_secure(&url("ftp://127.0.0.1/token")));
    }

    #[test]
    fn excerpts_lose_control_characters_and_secrets_and_stay_short() {
        assert_eq!(
            excerpt("\u{1b}[2Jbad\r\nline s3cret", "s3cret", 200),
            " [2Jbad  line <redacted>"
        );
        assert_eq!(excerpt(&"é".repeat(500), "", 200).chars().count(), 200);
    }
}
