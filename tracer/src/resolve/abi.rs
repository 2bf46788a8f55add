//! Where a field's argument is: the demangled parameter list split at top-level commas, and
//! System V integer registers counted in front of it (`this`, a hidden result pointer, by-value
//! classes the catalog declares).

use tracer_common::FieldOp;

use super::ResolvedField;
use crate::catalog::{Abi, FieldSpec, RoleSpec};

/// System V integer argument registers, in order.
pub(crate) const ARG_REGISTERS: [&str; 6] = ["rdi", "rsi", "rdx", "rcx", "r8", "r9"];

/// The parameters of `demangled` if it is the function `qualified` (not a lambda or template
/// instance inside it): `a::f(int, b const&) const` → ["int", "b const&"]. ABI tags
/// (`a::f[abi:cxx11](int)`) are allowed between the name and the list.
pub(crate) fn parameter_list(demangled: &str, qualified: &str) -> Option<Vec<String>> {
    let mut rest = demangled.strip_prefix(qualified)?;
    while let Some(tagged) = rest.strip_prefix("[abi:") {
        rest = &tagged[tagged.find(']')? + 1..];
    }
    let rest = rest.strip_prefix('(')?;
    let mut depth = 0usize;
    let mut params = Vec::new();
    let mut cur = String::new();
    for (i, c) in rest.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ']' => depth = depth.saturating_sub(1),
            ')' if depth == 0 => {
                // Only cv/ref qualifiers may follow the closing parenthesis (not `[clone .cold]`,
                // not `::$_0::operator()`).
                let qualifiers_only = rest[i + 1..]
                    .split_whitespace()
                    .all(|w| matches!(w, "const" | "volatile" | "&" | "&&" | "const&" | "const&&"));
                if !qualifiers_only {
                    return None;
                }
                let last = cur.trim();
                if !last.is_empty() {
                    params.push(last.to_string());
                }
                if params.len() == 1 && params[0] == "void" {
                    params.clear();
                }
                return Some(params);
            }
            ')' => depth -= 1,
            ',' if depth == 0 => {
                params.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    None
}

fn normalize(ty: &str) -> String {
    ty.chars().filter(|c| !c.is_whitespace()).collect()
}

const SCALARS: [&str; 17] = [
    "bool",
    "char",
    "signedchar",
    "unsignedchar",
    "short",
    "unsignedshort",
    "int",
    "unsignedint",
    "long",
    "unsignedlong",
    "longlong",
    "unsignedlonglong",
    "char8_t",
    "char16_t",
    "char32_t",
    "wchar_t",
    "decltype(nullptr)",
];

/// Floating-point parameters travel in SSE registers and take no integer register.
const FLOATS: [&str; 2] = ["float", "double"];

/// Integer registers one parameter takes, or None if unknown (a by-value class or enum).
fn registers_of(ty: &str, abi: &Abi) -> Option<u8> {
    let n = normalize(ty);
    if n.ends_with('&') || n.ends_with('*') || SCALARS.contains(&n.as_str()) {
        return Some(1);
    }
    if FLOATS.contains(&n.as_str()) {
        return Some(0);
    }
    abi.by_value
        .iter()
        .find(|b| n.starts_with(&normalize(&b.prefix)))
        .map(|b| b.registers)
}

pub(super) fn place_fields(
    spec: &RoleSpec,
    abi: &Abi,
    params: &[String],
) -> Result<Vec<ResolvedField>, String> {
    // Registers taken before the first parameter: hidden result pointer, then `this`.
    let base = spec.returns_by_value as u8 + spec.member as u8;
    let mut out = Vec::new();
    for f in &spec.fields {
        let read = f.read.unwrap_or(FieldOp::Reg);
        if f.this {
            out.push(ResolvedField {
                name: f.name,
                arg: spec.returns_by_value as u8,
                register: ARG_REGISTERS[spec.returns_by_value as usize],
                read,
                offset: f.offset,
                param: "this".into(),
            });
            continue;
        }
        let index = find_param(f, params)?;
        let mut reg = base;
        for p in &params[..index] {
            reg += registers_of(p, abi).ok_or_else(|| {
                format!(
                    "cannot place `{}`: `{p}` before it is passed by value in an unknown way",
                    f.name
                )
            })?;
        }
        if registers_of(&params[index], abi) != Some(1) {
            return Err(format!(
                "`{}` (`{}`) is not a one-register argument",
                f.name, params[index]
            ));
        }
        if reg as usize >= ARG_REGISTERS.len() {
            return Err(format!(
                "`{}` is passed on the stack (argument register {reg})",
                f.name
            ));
        }
        out.push(ResolvedField {
            name: f.name,
            arg: reg,
            register: ARG_REGISTERS[reg as usize],
            read,
            offset: f.offset,
            param: params[index].clone(),
        });
    }
    Ok(out)
}

fn find_param(f: &FieldSpec, params: &[String]) -> Result<usize, String> {
    let ty = normalize(f.ty.as_deref().unwrap_or_default());
    let start = match &f.after {
        Some(after) => {
            let a = normalize(after);
            params
                .iter()
                .position(|p| normalize(p) == a)
                .ok_or_else(|| format!("`{}`: no `{after}` parameter", f.name))?
                + 1
        }
        None => 0,
    };
    let nth = f.nth.unwrap_or(1).max(1);
    params
        .iter()
        .enumerate()
        .skip(start)
        .filter(|(_, p)| normalize(p) == ty)
        .nth(nth - 1)
        .map(|(i, _)| i)
        .ok_or_else(|| {
            format!(
                "`{}`: no parameter #{nth} of type `{}`{}",
                f.name,
                f.ty.as_deref().unwrap_or_default(),
                f.after
                    .as_ref()
                    .map(|a| format!(" after `{a}`"))
                    .unwrap_or_default()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{catalog::Catalog, roles::Field};

    #[test]
    fn parameter_lists_are_split_at_top_level_commas_only() {
        let d = "tt::tt_metal::Device::Device(tt::tt_metal::MetalEnv*, int, std::span<unsigned int const, 18446744073709551615ul>, bool)";
        assert_eq!(
            parameter_list(d, "tt::tt_metal::Device::Device").unwrap(),
            [
                "tt::tt_metal::MetalEnv*",
                "int",
                "std::span<unsigned int const, 18446744073709551615ul>",
                "bool"
            ]
        );
        assert_eq!(
            parameter_list("a::f() const", "a::f").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            parameter_list("a::f(void)", "a::f").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            parameter_list("a::f[abi:cxx11](int)", "a::f").unwrap(),
            ["int"]
        );
        assert_eq!(
            parameter_list("a::f(int) const &", "a::f").unwrap(),
            ["int"]
        );
        // A lambda inside the function is not the function.
        assert!(parameter_list("a::f(int)::$_0::operator()() const", "a::f").is_none());
        // Nor is a split-off cold part, nor a longer name that shares the prefix.
        assert!(parameter_list("a::f(int) [clone .cold]", "a::f").is_none());
        assert!(parameter_list("a::fg(int)", "a::f").is_none());
    }

    fn spec(member: bool, sret: bool, fields: Vec<FieldSpec>) -> RoleSpec {
        let mut s = Catalog::builtin().roles.remove(0);
        s.member = member;
        s.returns_by_value = sret;
        s.fields = fields;
        s
    }

    fn field(name: Field, ty: &str, after: Option<&str>) -> FieldSpec {
        FieldSpec {
            name,
            this: false,
            ty: Some(ty.into()),
            nth: None,
            after: after.map(Into::into),
            read: None,
            offset: 0,
            why: None,
        }
    }

    #[test]
    fn registers_follow_system_v_with_this_sret_and_two_register_spans() {
        let abi = Catalog::builtin().abi;
        let params: Vec<String> = ["tt::MetalEnv*", "std::span<unsigned int const, 5ul>", "int"]
            .map(String::from)
            .to_vec();
        let f = vec![field(Field::Chip, "int", None)];
        let reg = |member, sret, f: Vec<FieldSpec>| {
            place_fields(&spec(member, sret, f), &abi, &params).unwrap()[0].register
        };
        // this=rdi, MetalEnv*=rsi, span=rdx+rcx, int=r8
        assert_eq!(reg(true, false, f.clone()), "r8");
        // plus a hidden result pointer: r9
        assert_eq!(reg(true, true, f.clone()), "r9");
        // a free function: rcx
        assert_eq!(reg(false, false, f), "rcx");
        // `after` and `nth`
        let params: Vec<String> = ["int", "foo const&", "int", "int"]
            .map(String::from)
            .to_vec();
        let mut g = field(Field::Chip, "int", Some("foo const&"));
        g.nth = Some(2);
        assert_eq!(
            place_fields(&spec(false, false, vec![g]), &abi, &params).unwrap()[0].register,
            "rcx"
        );
        // a double before the field takes an SSE register, not an integer one
        let params: Vec<String> = ["double", "int"].map(String::from).to_vec();
        let f = vec![field(Field::Chip, "int", None)];
        assert_eq!(
            place_fields(&spec(false, false, f), &abi, &params).unwrap()[0].register,
            "rdi"
        );
        // unknown by-value class before the field: refuse rather than guess
        let params: Vec<String> = ["Opaque", "int"].map(String::from).to_vec();
        let err = place_fields(
            &spec(false, false, vec![field(Field::Chip, "int", None)]),
            &abi,
            &params,
        )
        .unwrap_err();
        assert!(err.contains("unknown way"), "{err}");
        // seventh register: on the stack
        let params: Vec<String> = ["int"; 7].map(String::from).to_vec();
        let mut g = field(Field::Chip, "int", None);
        g.nth = Some(7);
        assert!(place_fields(&spec(false, false, vec![g]), &abi, &params)
            .unwrap_err()
            .contains("stack"));
    }
}
