//! The probe catalog: version knowledge as data (catalog/tt-metal.toml, embedded; `--catalog`
//! overrides it). Parsing and validation only; resolution against a library is in `resolve`.

use serde::Deserialize;
use tracer_common::{FieldOp, Origin, RecipeKind, Ring};

use crate::{
    errors::{Error, Result},
    roles::{Field, Role},
};

/// Largest catalog file read (the built-in one is ~10 KB).
pub const MAX_CATALOG_BYTES: u64 = 1 << 20;

/// The catalog shipped in the binary.
pub const BUILTIN: &str = include_str!("../catalog/tt-metal.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    schema: u32,
    /// File name of the library the roles live in: what `watch` and `run` look for.
    #[serde(default = "default_library")]
    library: String,
    #[serde(rename = "role")]
    roles: Vec<RawRole>,
    #[serde(default)]
    abi: Abi,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    id: Role,
    summary: String,
    kind: RecipeKind,
    #[serde(default)]
    origin: Option<Origin>,
    #[serde(default)]
    ring: Option<Ring>,
    required: bool,
    member: bool,
    #[serde(default)]
    returns_by_value: bool,
    /// Another library of the package (a file beside the main one) the role lives in.
    #[serde(default)]
    library: Option<String>,
    #[serde(default)]
    names: Vec<String>,
    /// Function templates whose every instantiation is an attach point, each naming its
    /// operation in a template argument.
    #[serde(default)]
    instances_of: Vec<String>,
    #[serde(default)]
    fields: Vec<FieldSpec>,
    #[serde(default)]
    ret: Option<Field>,
}

/// How to find one field's argument in a demangled parameter list.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: Field,
    #[serde(default)]
    pub this: bool,
    #[serde(default, rename = "type")]
    pub ty: Option<String>,
    #[serde(default)]
    pub nth: Option<usize>,
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub read: Option<FieldOp>,
    #[serde(default)]
    pub offset: u32,
    /// Why a struct offset is needed (documentation; required when `offset` is used).
    #[serde(default)]
    pub why: Option<String>,
}

/// By-value class parameters and their register counts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Abi {
    #[serde(default)]
    pub by_value: Vec<ByValue>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByValue {
    pub prefix: String,
    pub registers: u8,
}

/// One validated role entry.
#[derive(Debug, Clone)]
pub struct RoleSpec {
    pub role: Role,
    pub summary: String,
    pub kind: RecipeKind,
    pub origin: Origin,
    pub ring: Ring,
    pub required: bool,
    pub member: bool,
    pub returns_by_value: bool,
    /// The library file of the package the role lives in, when not the main one
    /// ([`Catalog::library`]): found beside it.
    pub library: Option<String>,
    pub names: Vec<String>,
    /// Function templates whose every instantiation is an attach point (ttnn operations: the
    /// operation is a template argument, so each attach point knows its operation).
    pub instances_of: Vec<String>,
    pub fields: Vec<FieldSpec>,
    pub ret: Option<Field>,
}

impl RoleSpec {
    /// A context that its attach point names (one per operation type) rather than an argument.
    pub fn named_by_attach_point(&self) -> bool {
        self.kind == RecipeKind::Context && self.origin == Origin::Op
    }
}

#[derive(Debug, Clone)]
pub struct Catalog {
    pub origin: String,
    /// File name of the library the roles live in (`libtt_metal.so`): processes opening a
    /// file of this name are the ones `watch` and `run` arm.
    pub library: String,
    pub roles: Vec<RoleSpec>,
    pub abi: Abi,
}

impl Catalog {
    pub fn builtin() -> Catalog {
        Catalog::parse(BUILTIN, "(built-in)").expect("built-in catalog is valid")
    }

    pub fn from_file(path: &std::path::Path) -> Result<Catalog> {
        let data = crate::files::read_regular(path, MAX_CATALOG_BYTES, "catalog")?;
        let origin = path.display().to_string();
        let text = String::from_utf8(data).map_err(|e| Error::Catalog {
            origin: origin.clone(),
            reason: format!("not UTF-8 text ({e})"),
        })?;
        Catalog::parse(&text, &origin)
    }

    pub fn parse(text: &str, origin: &str) -> Result<Catalog> {
        let bad = |reason: String| Error::Catalog {
            origin: origin.to_string(),
            reason,
        };
        let raw: RawCatalog = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if raw.schema != 1 {
            return Err(bad(format!(
                "schema {} not supported (expected 1)",
                raw.schema
            )));
        }
        let mut roles = Vec::new();
        for r in raw.roles {
            let (role, kind) = (r.id, r.kind);
            let id = role.id();
            if roles.iter().any(|s: &RoleSpec| s.role == role) {
                return Err(bad(format!("role `{id}` listed twice")));
            }
            if kind == RecipeKind::None {
                return Err(bad(format!("role `{id}`: kind `none` is not a kind")));
            }
            if kind == RecipeKind::Context && r.origin.is_none() {
                return Err(bad(format!("context role `{id}` needs an origin")));
            }
            let origin = r.origin.unwrap_or(Origin::Application);
            let ring = r.ring.unwrap_or(Ring::Payload);
            if r.names.is_empty() && r.instances_of.is_empty() {
                return Err(bad(format!(
                    "role `{id}` lists no names (nor instances_of)"
                )));
            }
            if let Some(lib) = &r.library {
                if !valid_file_name(lib) || *lib == raw.library {
                    return Err(bad(format!(
                        "role `{id}`: library {lib:?} must be the file name of another library of the package"
                    )));
                }
                if r.required {
                    return Err(bad(format!(
                        "role `{id}` lives in {lib}, which a package may not have: it cannot be required"
                    )));
                }
            }
            if (origin == Origin::Op) != !r.instances_of.is_empty() && kind == RecipeKind::Context {
                return Err(bad(format!(
                    "context role `{id}`: origin `op` and instances_of go together (the attach point names the operation)"
                )));
            }
            // Names are matched against the text before the parameter list.
            if let Some(n) = r
                .names
                .iter()
                .chain(&r.instances_of)
                .find(|n| n.contains(['(', ')', ' ', '<', '>']) || n.is_empty())
            {
                return Err(bad(format!(
                    "role `{id}`: name `{n}` must be a qualified name without parameters (like `tt::tt_metal::Device::close`)"
                )));
            }
            for f in &r.fields {
                let name = f.name.id();
                if role.field_index(f.name).is_none() {
                    let known: Vec<&str> = role.fields().iter().map(|f| f.id()).collect();
                    return Err(bad(format!(
                        "role `{id}`: field `{name}` is not one of {known:?}"
                    )));
                }
                if f.this == f.ty.is_some() {
                    return Err(bad(format!(
                        "role `{id}` field `{name}`: give exactly one of `this = true` or `type`"
                    )));
                }
                if f.this && !r.member {
                    return Err(bad(format!(
                        "role `{id}` field `{name}`: `this` on a non-member"
                    )));
                }
                if f.offset != 0 && f.why.is_none() {
                    return Err(bad(format!(
                        "role `{id}` field `{name}`: a struct offset needs a `why`"
                    )));
                }
                if f.read == Some(FieldOp::None) {
                    return Err(bad(format!(
                        "role `{id}` field `{name}`: read `none` reads nothing"
                    )));
                }
            }
            for need in role.fields() {
                if !r.fields.iter().any(|f| f.name == *need) {
                    return Err(bad(format!("role `{id}` lacks field `{}`", need.id())));
                }
            }
            if r.ret != role.return_value() {
                return Err(bad(format!(
                    "role `{id}`: ret must be {}",
                    role.return_value().map_or("absent", |f| f.id())
                )));
            }
            if role.return_value().is_some() != (kind == RecipeKind::CallWithReturn) {
                return Err(bad(format!(
                    "role `{id}`: only call_with_return roles read a return value"
                )));
            }
            roles.push(RoleSpec {
                role,
                summary: r.summary,
                kind,
                origin,
                ring,
                required: r.required,
                member: r.member,
                returns_by_value: r.returns_by_value,
                library: r.library,
                names: r.names,
                instances_of: r.instances_of,
                fields: r.fields,
                ret: r.ret,
            });
        }
        if !valid_file_name(&raw.library) || raw.library.len() > tracer_common::MAX_LIBRARY_NAME {
            return Err(bad(format!(
                "library {:?} must be a file name of 1 to {} bytes, without '/'",
                raw.library,
                tracer_common::MAX_LIBRARY_NAME
            )));
        }
        Ok(Catalog {
            origin: origin.to_string(),
            library: raw.library,
            roles,
            abi: raw.abi,
        })
    }
}

impl Catalog {
    /// The other library files of the package that roles live in, each once.
    pub fn companions(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for lib in self.roles.iter().filter_map(|r| r.library.as_deref()) {
            if !names.contains(&lib) {
                names.push(lib);
            }
        }
        names
    }

    /// The roles that live in `library` (None: the main library).
    pub fn roles_in<'a>(&'a self, library: Option<&'a str>) -> impl Iterator<Item = &'a RoleSpec> {
        self.roles
            .iter()
            .filter(move |r| r.library.as_deref() == library)
    }
}

fn valid_file_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && name != "." && name != ".."
}

fn default_library() -> String {
    "libtt_metal.so".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_covers_every_role() {
        let c = Catalog::builtin();
        for r in <Role as strum::IntoEnumIterator>::iter() {
            assert!(c.roles.iter().any(|s| s.role == r), "{} missing", r.id());
        }
    }

    #[test]
    fn bad_catalogs_are_rejected_with_a_reason() {
        let cases = [
            ("schema = 2\nrole = []", "schema 2"),
            ("schema = 1\n[[role]]\nid = \"x\"\nsummary=\"\"\nkind=\"call\"\nrequired=true\nmember=true\nnames=[\"a\"]", "unknown variant `x`"),
            ("schema = 1\n[[role]]\nid = \"device_close\"\nsummary=\"\"\nkind=\"call\"\nrequired=true\nmember=true\nnames=[\"a\"]", "lacks field"),
            ("not toml [", "catalog"),
            ("schema = 1\n[[role]]\nid = \"device_close\"\nsummary=\"\"\nkind=\"call\"\nrequired=true\nmember=true\nnames=[\"a::close()\"]", "without parameters"),
        ];
        for (text, want) in cases {
            let err = Catalog::parse(text, "t").unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }
}
