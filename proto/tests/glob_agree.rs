//! The native glob matcher and the regular expression given to Rego must accept exactly the
//! same strings; the fast engine and the Rego engine rely on it.

use openshell_proto::policy::glob::{Glob, GlobKind, to_regex};
use proptest::prelude::*;

fn path_glob() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("*".to_string()),
        Just("**".to_string()),
        Just("a*".to_string()),
        Just("*b".to_string()),
        Just("a?".to_string()),
        Just("".to_string()),
    ];
    (prop::bool::ANY, prop::collection::vec(seg, 1..5)).prop_map(|(lead, segs)| {
        let body = segs.join("/");
        let g = if lead {
            format!("/{body}")
        } else {
            format!("**/{body}")
        };
        g.replace("//", "/")
    })
}

fn path_text() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        Just("a"),
        Just("b"),
        Just("ab"),
        Just("ba"),
        Just("aa"),
        Just("x"),
        Just(""),
    ];
    prop::collection::vec(seg, 0..6).prop_map(|segs| format!("/{}", segs.join("/")))
}

fn host_glob() -> impl Strategy<Value = String> {
    let label = prop_oneof![
        Just("a"),
        Just("b"),
        Just("*"),
        Just("**"),
        Just("a*"),
        Just("*-b"),
        Just("Com"),
    ];
    prop::collection::vec(label, 1..5).prop_map(|l| l.join("."))
}

fn host_text() -> impl Strategy<Value = String> {
    let label = prop_oneof![Just("a"), Just("b"), Just("ab"), Just("x-b"), Just("com")];
    prop::collection::vec(label, 1..6).prop_map(|l| l.join("."))
}

fn query_glob() -> impl Strategy<Value = String> {
    "[ab*?]{0,6}"
}

fn agree(glob: &str, kind: GlobKind, text: &str) -> Result<(), TestCaseError> {
    let re =
        regex::Regex::new(&to_regex(glob, kind)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let native = Glob::new(glob, kind).is_match(text);
    prop_assert_eq!(native, re.is_match(text), "glob {:?} on {:?}", glob, text);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn paths_agree(g in path_glob(), t in path_text()) {
        prop_assume!(openshell_proto::policy::glob::validate_path(&g).is_ok());
        agree(&g, GlobKind::Path, &t)?;
    }

    #[test]
    fn binaries_agree(g in path_glob(), t in path_text()) {
        prop_assume!(openshell_proto::policy::glob::validate_binary(&g).is_ok());
        agree(&g, GlobKind::Binary, &t)?;
    }

    #[test]
    fn hosts_agree(g in host_glob(), t in host_text()) {
        prop_assume!(openshell_proto::policy::glob::validate_host(&g).is_ok());
        agree(&g, GlobKind::Host, &t)?;
    }

    #[test]
    fn queries_agree(g in query_glob(), t in "[ab]{0,6}") {
        agree(&g, GlobKind::Query, &t)?;
    }
}

#[test]
fn documented_examples() {
    let cases: &[(&str, GlobKind, &str, bool)] = &[
        ("/repos/**", GlobKind::Path, "/repos", true),
        ("/repos/**", GlobKind::Path, "/repos/a/b", true),
        ("/repos/**", GlobKind::Path, "/reposx", false),
        ("/repos/*", GlobKind::Path, "/repos/a/b", false),
        ("/repos/*/issues", GlobKind::Path, "/repos/x/issues", true),
        ("/**/info/refs", GlobKind::Path, "/info/refs", true),
        ("/**/info/refs", GlobKind::Path, "/a/b.git/info/refs", true),
        ("*.github.com", GlobKind::Host, "api.github.com", true),
        ("*.github.com", GlobKind::Host, "a.b.github.com", false),
        ("**.github.com", GlobKind::Host, "a.b.github.com", true),
        ("**.github.com", GlobKind::Host, "github.com", false),
        ("*.GitHub.com", GlobKind::Host, "api.github.com", true),
        ("**", GlobKind::Binary, "/usr/bin/curl", true),
        ("/usr/bin/*", GlobKind::Binary, "/usr/bin/curl", true),
        ("/usr/bin/*", GlobKind::Binary, "/usr/bin/x/curl", false),
        ("**/node", GlobKind::Binary, "/home/u/.nvm/bin/node", true),
    ];
    for (g, kind, t, want) in cases {
        assert_eq!(Glob::new(g, *kind).is_match(t), *want, "{g} on {t}");
    }
}
