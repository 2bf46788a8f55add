//! Demangling into the exact text `nm -C` (binutils) prints, which is what the catalog's names
//! and parameter types are written against.

use cpp_demangle::{DemangleOptions, Symbol as Mangled};

/// Longest demangled name kept (the longest of any symbol in tt-metal 0.62-0.81 is ~12 KB).
/// Substitutions can refer to earlier ones, so a short hostile name can demangle to an
/// exponentially long text (`a<S0_, S0_>` nested 40 deep is 2^40 words): without a bound,
/// resolving such a library ran until memory ran out (a crafted library run through the
/// resolve fuzz target hit its 10 s -timeout).
const MAX_DEMANGLED: usize = 32 << 10;

/// A `fmt::Write` that fails past [`MAX_DEMANGLED`]; cpp_demangle stops at the first error.
struct Bounded(String);

impl std::fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.0.len() + s.len() > MAX_DEMANGLED {
            return Err(std::fmt::Error);
        }
        self.0.push_str(s);
        Ok(())
    }
}

/// Demangles `mangled` into the text `nm -C` (and `c++filt -i`) prints; None if it is not a
/// mangled name or demangles to more than [`MAX_DEMANGLED`] bytes.
pub fn demangle(mangled: &str) -> Option<String> {
    let sym = Mangled::new(mangled.as_bytes()).ok()?;
    let mut text = Bounded(String::new());
    sym.structured_demangle(&mut text, &DemangleOptions::default())
        .ok()?;
    Some(like_nm(&text.0))
}

/// Rewrites cpp_demangle's spelling where it differs from binutils' (`nm -C`, `c++filt -i`)
/// only in style: integer literals (`(unsigned long)5` → `5ul`), `std::nullptr_t` (→
/// `decltype(nullptr)`), `std::istream` and `std::iostream` (which cpp_demangle spells out, unlike
/// `std::ostream`), and the space in function types (`R (A)`).
fn like_nm(s: &str) -> String {
    const STREAMS: [(&str, &str); 2] = [
        (
            "std::basic_istream<char, std::char_traits<char> >",
            "std::istream",
        ),
        (
            "std::basic_iostream<char, std::char_traits<char> >",
            "std::iostream",
        ),
    ];
    let mut streams = std::borrow::Cow::Borrowed(s);
    for (long, short) in STREAMS {
        if streams.contains(long) {
            streams = streams.replace(long, short).into();
        }
    }
    let s: &str = &streams;
    const LITERALS: [(&str, &str); 5] = [
        ("(unsigned long long)", "ull"),
        ("(unsigned long)", "ul"),
        ("(unsigned int)", "u"),
        ("(long long)", "ll"),
        ("(long)", "l"),
    ];
    const NULLPTR: (&str, &str) = ("std::nullptr_t", "decltype(nullptr)");
    if !s.contains("(unsigned")
        && !s.contains("(long")
        && !s.contains(NULLPTR.0)
        && !s.contains('<')
    {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 16);
    let mut rest = s;
    'scan: while let Some(at) = rest.find(['(', 's']) {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        for (cast, suffix) in LITERALS {
            if let Some(tail) = rest.strip_prefix(cast) {
                let neg = tail.starts_with('-') as usize;
                let digits = tail[neg..].bytes().take_while(u8::is_ascii_digit).count();
                if digits > 0 {
                    out.push_str(&tail[..neg + digits]);
                    out.push_str(suffix);
                    rest = &tail[neg + digits..];
                    continue 'scan;
                }
            }
        }
        let word_start = out
            .bytes()
            .last()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == b'_' || c == b':'));
        if let Some(tail) = rest.strip_prefix(NULLPTR.0) {
            if word_start
                && !tail
                    .bytes()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
            {
                out.push_str(NULLPTR.1);
                rest = tail;
                continue 'scan;
            }
        }
        out.push_str(&rest[..1]);
        rest = &rest[1..];
    }
    out.push_str(rest);
    function_type_spacing(&out)
}

/// binutils writes a function type as `R (A)`, cpp_demangle as `R(A)` after a class name. A
/// function type only appears inside template arguments, and its `)` ends the argument.
fn function_type_spacing(s: &str) -> String {
    const NOT_TYPES: [&str; 6] = [
        "lambda", "decltype", "sizeof", "alignof", "noexcept", "typeid",
    ];
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len() + 8);
    let mut depth = 0usize;
    let mut last = 0;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'<' => depth += 1,
            b'>' => depth = depth.saturating_sub(1),
            b'(' if depth > 0
                && i > 0
                && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'>') =>
            {
                let word_start = s[..i]
                    .rfind(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                    .map_or(0, |p| p + 1);
                let mut d = 0usize;
                let close = s[i..].char_indices().find_map(|(j, ch)| match ch {
                    '(' => {
                        d += 1;
                        None
                    }
                    ')' => {
                        d -= 1;
                        (d == 0).then_some(i + j)
                    }
                    _ => None,
                });
                let ends_argument =
                    close.is_some_and(|close| matches!(b.get(close + 1), Some(b'>' | b',')));
                if ends_argument && !NOT_TYPES.contains(&&s[word_start..i]) {
                    out.push_str(&s[last..i]);
                    out.push(' ');
                    last = i;
                }
            }
            _ => {}
        }
    }
    out.push_str(&s[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangled_text_is_what_nm_prints() {
        let cases = [
            (
                "_ZN2tt8tt_metal6DeviceC2EihmmSt4spanIKjLm18446744073709551615EEbjjm",
                "tt::tt_metal::Device::Device(int, unsigned char, unsigned long, unsigned long, std::span<unsigned int const, 18446744073709551615ul>, bool, unsigned int, unsigned int, unsigned long)",
            ),
            ("_Z1fRSo", "f(std::ostream&)"),
            ("_Z1fRSiRSd", "f(std::istream&, std::iostream&)"),
            (
                "_Z1fRSt14basic_ifstreamIcSt11char_traitsIcEE",
                "f(std::basic_ifstream<char, std::char_traits<char> >&)",
            ),
            ("_Z1fDn", "f(decltype(nullptr))"),
            (
                "_Z1fSt8functionIFN2tt1BEvEE",
                "f(std::function<tt::B ()>)",
            ),
            ("_Z1fILln5EEvv", "void f<-5l>()"),
            ("_Z1fILj7EEvv", "void f<7u>()"),
        ];
        for (mangled, want) in cases {
            assert_eq!(demangle(mangled).as_deref(), Some(want), "{mangled}");
        }
        // Only the whole word is rewritten.
        assert_eq!(like_nm("f(std::nullptr_t_like)"), "f(std::nullptr_t_like)");
        assert_eq!(like_nm("f(my::std::nullptr_t)"), "f(my::std::nullptr_t)");
    }

    /// Each level's template arguments are the previous level twice: 2^N words from a name of
    /// a few bytes per level. Unbounded, 22 levels took a minute in a test build; the 40 levels
    /// of the crafted library in the resolve fuzz corpus would never finish.
    #[test]
    fn an_exponentially_long_demangling_is_refused() {
        let mut name = String::from("_Z5close1aIiiE");
        let sub = |i: u32| match i {
            0 => "S_".to_string(),
            i => format!(
                "S{}_",
                char::from_digit(i - 1, 36).unwrap().to_ascii_uppercase()
            ),
        };
        for level in 1..=22 {
            name.push_str(&format!("S_I{}{}E", sub(level), sub(level)));
        }
        let t = std::time::Instant::now();
        assert_eq!(demangle(&name), None);
        assert!(t.elapsed().as_secs() < 5, "{:?}", t.elapsed());
        // Three levels are short and fine.
        assert_eq!(
            demangle("_Z5close1aIiiES_IS0_S0_ES_IS1_S1_E").as_deref(),
            Some("close(a<int, int>, a<a<int, int>, a<int, int> >, a<a<a<int, int>, a<int, int> >, a<a<int, int>, a<int, int> > >)")
        );
    }
}
