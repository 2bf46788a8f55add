//! ttnn device operations named from the mangled symbols of their template instantiations.
//!
//! ttnn (`_ttnncpp.so`) runs every device operation through templates in
//! `ttnn::device_operation::detail`, instantiated once per operation type and exported (weak) in
//! .dynsym: `launch_operation_with_adapter<MeshDeviceOperationAdapter<Op>>` (one per op, called
//! once per launch, in every release from 0.62 to 0.81), `handle_mesh_adapter_cache_hit`,
//! `create_and_cache_mesh_workload[_with_allocation_context]`, `enqueue_mesh_workload`,
//! `look_up_program_cache`, `use_mesh_workload`. The operation is the template argument of
//! `MeshDeviceOperationAdapter`, so a uprobe on one instantiation knows its operation from the
//! symbol alone.
//!
//! Those symbols are built by clang ≥ 17 with C++20 constrained template parameters, mangled as
//! `Tk <type-constraint>` (`ITkNS0_36DeviceOperationWithMeshDeviceAdapterENS0_26Mesh…`), which
//! cpp_demangle 0.4, binutils 2.40 and llvm-cxxfilt 14 reject. The constraint's own name is not a
//! substitution candidate (LLVM's `parseTemplateParamDecl` parses it without recording it: the
//! cache-hit symbols spell `DeviceOperationWithMeshDeviceAdapter` out again where a substitution
//! would otherwise be used), so removing `Tk` and the constraint name leaves plain mangling with
//! every `S<n>_` still pointing where it did. [`strip_constraints`] does that; [`op_of`] demangles
//! the result and reads the adapter's argument.
//!
//! The entry (which function of the launch path a symbol is) comes from the mangled prefix, never
//! from demangled text. 0.62.2 has two instantiations for `OldInfraDeviceOperation<…>`, shared by
//! the ~68 operations of the old infrastructure: their symbol carries no operation name, and
//! [`Op::OldInfra`] says so rather than naming one.
//!
//! Short names are not unique across namespaces (0.81.1: 316 operation types, 289 short names,
//! e.g. `ttnn::operations::pool::Pool2D` and `ttnn::operations::pool::quasar::Pool2D`): key on
//! [`Op::path`]. cpp_demangle misprints some parameter types of these symbols (`const` placed
//! after a dependent nested name), so only the template arguments are read.
//!
//! Pure: no I/O. Tested against every such symbol of ttnn 0.81.1 and a selection from 0.62.2
//! (`tests/fixtures/ttnn-ops`).

use std::borrow::Cow;

use super::demangle::demangle;

/// `ttnn::device_operation::detail::` as a nested-name prefix.
const DETAIL: &str = "_ZN4ttnn16device_operation6detail";
/// Every symbol with an operation in it names the adapter.
const ADAPTER_MANGLED: &str = "26MeshDeviceOperationAdapterI";
const ADAPTER: &str = "ttnn::device_operation::MeshDeviceOperationAdapter<";
const OLD_INFRA: &str = "tt::tt_metal::operation::OldInfraDeviceOperation<";

/// Which function of ttnn's launch path an instantiation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entry {
    /// Once per operation launch (every release).
    LaunchOperationWithAdapter,
    /// Program-cache hit.
    HandleMeshAdapterCacheHit,
    /// Program-cache miss (mostly inlined).
    CreateAndCacheMeshWorkload,
    /// Program-cache miss, out of line for every operation from 0.78.
    CreateAndCacheMeshWorkloadWithAllocationContext,
    /// Hit and miss (0.67+): gets the MeshWorkload and a hit flag.
    EnqueueMeshWorkload,
    /// 0.81+: the cache look-up before hit or miss.
    LookUpProgramCache,
    /// 0.81+: hit or miss handler dispatch.
    UseMeshWorkload,
    /// `launch<Op>` (0.67+): the outermost per-launch template, taking the operation itself;
    /// output tensors are allocated inside it.
    Launch,
    /// `invoke<Op>` (0.62): the outermost per-launch template of that release.
    Invoke,
    /// Another `detail::` function template with the adapter among its arguments; its name is in
    /// [`OpSymbol::function`].
    Other,
}

impl Entry {
    fn of(function: &str) -> Entry {
        match function {
            "launch_operation_with_adapter" => Entry::LaunchOperationWithAdapter,
            "handle_mesh_adapter_cache_hit" => Entry::HandleMeshAdapterCacheHit,
            "create_and_cache_mesh_workload" => Entry::CreateAndCacheMeshWorkload,
            "create_and_cache_mesh_workload_with_allocation_context" => {
                Entry::CreateAndCacheMeshWorkloadWithAllocationContext
            }
            "enqueue_mesh_workload" => Entry::EnqueueMeshWorkload,
            "look_up_program_cache" => Entry::LookUpProgramCache,
            "use_mesh_workload" => Entry::UseMeshWorkload,
            "launch" => Entry::Launch,
            "invoke" => Entry::Invoke,
            _ => Entry::Other,
        }
    }
}

/// The operation an instantiation is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    /// `path` as `nm -C` prints it (`ttnn::operations::binary_ng::BinaryNgDeviceOperation`);
    /// `name` its last component (`BinaryNgDeviceOperation`, template arguments kept).
    Named { path: String, name: String },
    /// `tt::tt_metal::operation::OldInfraDeviceOperation<…>` (0.62): one instantiation serves
    /// many operations, so the symbol has no operation name. `path` is the full type.
    OldInfra { path: String },
}

impl Op {
    /// The short name, or None for [`Op::OldInfra`].
    pub fn name(&self) -> Option<&str> {
        match self {
            Op::Named { name, .. } => Some(name),
            Op::OldInfra { .. } => None,
        }
    }

    /// The full type as `nm -C` prints it.
    pub fn path(&self) -> &str {
        match self {
            Op::Named { path, .. } | Op::OldInfra { path } => path,
        }
    }
}

/// What one `ttnn::device_operation::detail::*<…MeshDeviceOperationAdapter<Op>…>` symbol is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OpSymbol {
    pub entry: Entry,
    /// The function's own name (`launch_operation_with_adapter`), from the mangled prefix.
    pub function: String,
    pub op: Op,
}

/// Removes every C++20 type constraint (`Tk <name>`, also inside lambda signatures `UlTk…`) from
/// a mangled name, leaving mangling that cpp_demangle and binutils read. Borrowed when there is
/// nothing to remove, and also, unchanged, when a constraint is not one of the forms known to add
/// no substitution candidates (`<source-name>`, `St <source-name>`, `S<seq>_`, or
/// `N (S<seq>_ | St) <source-name> E`, without template arguments): removing any other would
/// shift later `S<n>_` references and demangle to the wrong types, so such a name is left to fail
/// demangling.
pub fn strip_constraints(mangled: &str) -> Cow<'_, str> {
    if !mangled.contains("Tk") {
        return Cow::Borrowed(mangled);
    }
    let s = mangled.as_bytes();
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    // The previous token was a whole source name, substitution or template parameter, after which
    // digits start a source name.
    let mut after_unit = false;
    let mut stripped = false;
    while i < s.len() {
        let c = s[i];
        if c == b'T' && s.get(i + 1) == Some(&b'k') {
            let Some(end) = constraint_end(s, i + 2) else {
                return Cow::Borrowed(mangled);
            };
            i = end;
            after_unit = true;
            stripped = true;
            continue;
        }
        if c.is_ascii_digit() {
            let digits_end = i + s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
            let is_name = after_unit || !is_number_context(s, i, digits_end);
            let end = if is_name {
                // An over-long length copies the rest verbatim (demangling then fails).
                parse_usize(&s[i..digits_end])
                    .and_then(|n| digits_end.checked_add(n))
                    .map_or(s.len(), |e| e.min(s.len()))
            } else {
                digits_end
            };
            out.extend_from_slice(&s[i..end]);
            i = end;
            after_unit = is_name;
            continue;
        }
        let unit_end = match c {
            b'S' => seq_id_end(s, i + 1),
            b'T' => template_param_end(s, i + 1),
            _ => None,
        };
        if let Some(end) = unit_end {
            out.extend_from_slice(&s[i..end]);
            i = end;
            after_unit = true;
            continue;
        }
        out.push(c);
        i += 1;
        after_unit = false;
    }
    if !stripped {
        return Cow::Borrowed(mangled);
    }
    // A constraint name cut through a multi-byte character leaves invalid UTF-8: not a name
    // anything mangles, so it stays as it was.
    String::from_utf8(out).map_or(Cow::Borrowed(mangled), Cow::Owned)
}

/// Digits that are a number rather than a source-name length: after `_` (discriminators,
/// `Ut_`), in a literal (`L<builtin>` + value, `Lin5E`), or a count closed by `_` after `E`
/// (lambda discriminator `E0_`), `A` (array), `t` (`Ut0_`), `v` (`Dv4_`) or `p` (`fp0_`).
fn is_number_context(s: &[u8], start: usize, digits_end: usize) -> bool {
    let Some(&prev) = start.checked_sub(1).and_then(|p| s.get(p)) else {
        return false;
    };
    let before = |k: usize| start.checked_sub(k).and_then(|p| s.get(p)).copied();
    if prev == b'_' {
        return true;
    }
    if prev.is_ascii_lowercase()
        && (before(2) == Some(b'L') || (prev == b'n' && before(3) == Some(b'L')))
    {
        return true;
    }
    s.get(digits_end) == Some(&b'_') && matches!(prev, b'E' | b'A' | b't' | b'v' | b'p')
}

fn parse_usize(digits: &[u8]) -> Option<usize> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// After `S`: the end of `S_`, `S<base-36 seq-id>_` or a two-letter abbreviation (`St`, `Sa`…).
fn seq_id_end(s: &[u8], j: usize) -> Option<usize> {
    match s.get(j)? {
        b'_' => Some(j + 1),
        b't' | b'a' | b'b' | b's' | b'i' | b'o' | b'd' => Some(j + 1),
        c if c.is_ascii_digit() || c.is_ascii_uppercase() => {
            let n = s[j..]
                .iter()
                .take_while(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
                .count();
            (s.get(j + n) == Some(&b'_')).then_some(j + n + 1)
        }
        _ => None,
    }
}

/// After `T`: the end of `T_` or `T<n>_` (template parameters, which a source name may follow).
fn template_param_end(s: &[u8], j: usize) -> Option<usize> {
    let n = s
        .get(j..)?
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    (s.get(j + n) == Some(&b'_')).then_some(j + n + 1)
}

/// After `<len>`: the end of the source name.
fn source_name_end(s: &[u8], j: usize) -> Option<usize> {
    let n = s
        .get(j..)?
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if n == 0 {
        return None;
    }
    let len = parse_usize(&s[j..j + n])?;
    let end = (j + n).checked_add(len)?;
    (len > 0 && end <= s.len()).then_some(end)
}

/// After `Tk`: the end of a constraint name that adds no substitution candidates (see
/// [`strip_constraints`]) and has no template arguments; None for any other form.
fn constraint_end(s: &[u8], j: usize) -> Option<usize> {
    let substitution = |j: usize| match s.get(j)? {
        b'S' if s.get(j + 1) == Some(&b't') => Some(j + 2),
        b'S' => seq_id_end(s, j + 1).filter(|_| s.get(j + 1) != Some(&b'a')),
        _ => None,
    };
    let end = match s.get(j)? {
        b'N' => {
            let name = source_name_end(s, substitution(j + 1)?)?;
            (s.get(name) == Some(&b'E')).then_some(name + 1)
        }
        b'S' if s.get(j + 1) == Some(&b't') => source_name_end(s, j + 2),
        b'S' => {
            let end = seq_id_end(s, j + 1)?;
            // Only a numbered substitution names a concept; `Sa`, `Ss`… are library classes.
            matches!(s.get(j + 1), Some(b'_' | b'0'..=b'9' | b'A'..=b'Z')).then_some(end)
        }
        c if c.is_ascii_digit() => source_name_end(s, j),
        _ => None,
    }?;
    // Template arguments (`St12sentinel_forIT0_E`) would need a full type parser to skip.
    (s.get(end) != Some(&b'I')).then_some(end)
}

/// The operation and entry of a `ttnn::device_operation::detail::<function><…>` instantiation
/// whose template arguments include `MeshDeviceOperationAdapter<Op>`, or of `launch<Op>` /
/// `invoke<Op>`, whose first template argument is the operation itself; None for any other
/// symbol or one that does not demangle.
pub fn op_of(mangled: &str) -> Option<OpSymbol> {
    instance(mangled, false).map(|(s, _)| s)
}

/// [`op_of`], and with `parameters` the instantiation's [`parameters`] too, from one demangling
/// (None for them if they do not split).
pub fn instance(mangled: &str, parameters: bool) -> Option<(OpSymbol, Option<Vec<String>>)> {
    let rest = mangled.strip_prefix(DETAIL)?.as_bytes();
    let name_end = source_name_end(rest, 0)?;
    if rest.get(name_end) != Some(&b'I') {
        return None;
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let function = std::str::from_utf8(&rest[digits..name_end]).ok()?;
    let entry = Entry::of(function);
    let adapted = mangled.contains(ADAPTER_MANGLED);
    if !adapted && !matches!(entry, Entry::Launch | Entry::Invoke) {
        return None;
    }
    let text = demangle(&strip_constraints(mangled))?;
    let head = format!("ttnn::device_operation::detail::{function}<");
    let params = parameters.then(|| parameters_in(&text, &head)).flatten();
    let args = template_args(&text[text.find(&head)? + head.len()..])?;
    let path = if adapted {
        // First for the launch path; after the factory in `create_mesh_workload_from_workload_factory`.
        let adapter = args.into_iter().find_map(|a| a.strip_prefix(ADAPTER))?;
        let inner = adapter.strip_suffix('>')?.trim_end();
        template_args(&format!("{inner}>"))?
            .into_iter()
            .next()?
            .to_string()
    } else {
        args.into_iter().next()?.to_string()
    };
    if path.is_empty() {
        return None;
    }
    let op = if path.starts_with(OLD_INFRA) {
        Op::OldInfra { path }
    } else {
        let name = last_component(&path).to_string();
        Op::Named { path, name }
    };
    Some((
        OpSymbol {
            entry,
            function: function.to_string(),
            op,
        },
        params,
    ))
}

/// The parameter list of a `ttnn::device_operation::detail::<function><…>(…)` instantiation, as
/// demangled once its constraints are stripped: `["… const&", "…", "bool"]`. Only their count
/// and order are to be trusted (see the module's note on `const`), which is what placing a
/// field by its type's position needs for plain types (`bool`, pointers).
pub fn parameters(mangled: &str) -> Option<Vec<String>> {
    let rest = mangled.strip_prefix(DETAIL)?.as_bytes();
    let name_end = source_name_end(rest, 0)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let function = std::str::from_utf8(&rest[digits..name_end]).ok()?;
    let text = demangle(&strip_constraints(mangled))?;
    parameters_in(
        &text,
        &format!("ttnn::device_operation::detail::{function}<"),
    )
}

/// The parameters of the demangled `text` of a function whose name and `<` are `head`.
fn parameters_in(text: &str, head: &str) -> Option<Vec<String>> {
    let after_args = text.find(head)? + head.len();
    let args_len = template_args_len(&text[after_args..])?;
    let qualified = &head[..head.len() - 1];
    let params = super::abi::parameter_list(
        &format!("{qualified}{}", &text[after_args + args_len..]),
        qualified,
    )?;
    Some(params.iter().map(|p| requalified(p)).collect())
}

/// cpp_demangle 0.4 prints the cv and reference qualifiers of a nested name whose prefix is a
/// template parameter right after that prefix (`Adapter<Op> const::tensor_args_t&`,
/// `Adapter<Op>&::tensor_return_value_t`); they belong to the whole type, so they move to
/// its end (`Adapter<Op>::tensor_args_t const&`). What is a reference stays one, which is all
/// placing a field after it needs.
fn requalified(param: &str) -> String {
    if !param.contains(" const::") && !param.contains("&::") {
        return param.to_string();
    }
    let is_const = param.contains(" const::");
    let mut bare = param.replace(" const::", "::").replace("&::", "::");
    let is_ref = bare.ends_with('&') || param.contains("&::");
    while bare.ends_with('&') {
        bare.pop();
    }
    let bare = bare.trim_end().trim_end_matches(" const").to_string();
    format!(
        "{bare}{}{}",
        if is_const { " const" } else { "" },
        if is_ref { "&" } else { "" }
    )
}

/// Length of `s` (which starts just after an opening `<`) up to and including its closing `>`.
fn template_args_len(s: &str) -> Option<usize> {
    let mut depth = 1usize;
    for (i, c) in s.bytes().enumerate() {
        match c {
            b'<' => depth += 1,
            b'>' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// The top-level, comma-separated template arguments of `s`, which starts just after an opening
/// `<`; None if it never closes or the brackets do not balance.
fn template_args(s: &str) -> Option<Vec<&str>> {
    let mut args = Vec::new();
    let mut stack = vec![b'>'];
    let mut start = 0;
    for (i, c) in s.bytes().enumerate() {
        match c {
            b'<' => stack.push(b'>'),
            b'(' => stack.push(b')'),
            b'{' => stack.push(b'}'),
            b'[' => stack.push(b']'),
            b'>' | b')' | b'}' | b']' => {
                if stack.pop()? != c {
                    return None;
                }
                if stack.is_empty() {
                    args.push(s[start..i].trim());
                    return Some(args);
                }
            }
            b',' if stack.len() == 1 => {
                args.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    None
}

/// `a::b<c::d>::E<f::g>` → `E<f::g>`: the last `::` component outside any brackets.
fn last_component(path: &str) -> &str {
    let mut depth = 0usize;
    let mut start = 0;
    let b = path.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'<' | b'(' | b'{' | b'[' => depth += 1,
            b'>' | b')' | b'}' | b']' => depth = depth.saturating_sub(1),
            b':' if depth == 0 && b.get(i + 1) == Some(&b':') => start = i + 2,
            _ => {}
        }
    }
    &path[start.min(path.len())..]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prototype the fixtures' expected columns came from prints `>>`; `nm -C` (and
    /// cpp_demangle) prints `> >`.
    fn nm_style(path: &str) -> String {
        let mut s = path.to_string();
        while s.contains(">>") {
            s = s.replace(">>", "> >");
        }
        s
    }

    /// `(symbol, function, op path)` of a fixture pair: one mangled name per line, and on the
    /// same line of the `.ops` file the function and operation an independent parser found.
    fn fixture(symbols: &str, ops: &str) -> Vec<(String, String, String)> {
        let names = test_support::fixture_lines(symbols);
        let expected = test_support::fixture_lines(ops);
        assert_eq!(names.len(), expected.len(), "{symbols} and {ops} pair up");
        names
            .into_iter()
            .zip(expected)
            .map(|(name, line)| {
                let (function, op) = line.split_once('\t').expect("function<TAB>op");
                (name, function.to_string(), nm_style(op))
            })
            .collect()
    }

    fn check(rows: &[(String, String, String)]) -> Vec<OpSymbol> {
        rows.iter()
            .map(|(mangled, function, path)| {
                let got = op_of(mangled).unwrap_or_else(|| panic!("no op for {mangled}"));
                assert_eq!(&got.function, function, "{mangled}");
                assert_eq!(got.op.path(), path, "{mangled}");
                assert_eq!(
                    got.entry == Entry::Other,
                    got.function.contains("from_workload")
                );
                got
            })
            .collect()
    }

    #[test]
    fn every_ttnn_0_81_1_adapter_symbol_names_its_operation() {
        let rows = fixture(
            "ttnn-ops/_ttnncpp-0.81.1.symbols.xz",
            "ttnn-ops/_ttnncpp-0.81.1.ops.xz",
        );
        assert_eq!(rows.len(), 1877);
        let got = check(&rows);
        let count = |e: Entry| got.iter().filter(|s| s.entry == e).count();
        assert_eq!(count(Entry::LaunchOperationWithAdapter), 316);
        assert_eq!(count(Entry::HandleMeshAdapterCacheHit), 293);
        assert_eq!(count(Entry::EnqueueMeshWorkload), 316);
        assert_eq!(
            count(Entry::CreateAndCacheMeshWorkloadWithAllocationContext),
            317
        );
        // One launch per operation, each a distinct operation type. Short names are not unique
        // across namespaces (316 types, 289 short names).
        let launches = || {
            got.iter()
                .filter(|s| s.entry == Entry::LaunchOperationWithAdapter)
        };
        let distinct = |mut v: Vec<&str>| {
            v.sort_unstable();
            v.dedup();
            v.len()
        };
        assert_eq!(distinct(launches().map(|s| s.op.path()).collect()), 316);
        let names = launches()
            .map(|s| s.op.name().expect("0.81.1 has no old-infra operations"))
            .collect();
        assert_eq!(distinct(names), 289);
        let binary_ng = got
            .iter()
            .find(|s| s.op.name() == Some("BinaryNgDeviceOperation"))
            .expect("binary_ng is in 0.81.1");
        assert_eq!(
            binary_ng.op.path(),
            "ttnn::operations::binary_ng::BinaryNgDeviceOperation"
        );
    }

    #[test]
    fn ttnn_0_62_2_old_infra_symbols_have_no_operation_name() {
        let rows = fixture(
            "ttnn-ops/ttnn-0.62.2-picked.symbols",
            "ttnn-ops/ttnn-0.62.2-picked.ops",
        );
        let got = check(&rows);
        let old: Vec<_> = got
            .iter()
            .filter(|s| matches!(s.op, Op::OldInfra { .. }))
            .collect();
        assert_eq!(old.len(), 4);
        assert!(old.iter().all(|s| s.op.name().is_none()));
        assert!(got.iter().any(|s| s.op.name() == Some("MorehSgdOperation")
            && s.entry == Entry::LaunchOperationWithAdapter));
        assert!(got
            .iter()
            .any(|s| s.entry == Entry::CreateAndCacheMeshWorkload));
    }

    #[test]
    fn constraints_strip_to_what_binutils_demangles() {
        let mangled = "_ZN4ttnn16device_operation6detail29launch_operation_with_adapterITkNS0_36DeviceOperationWithMeshDeviceAdapterENS0_26MeshDeviceOperationAdapterINS_4prim13SDPAOperationEEEEEvRKNT_22operation_attributes_tERKNS7_13tensor_args_tERNS7_21tensor_return_value_tEPN2tt8tt_metal11distributed10MeshDeviceE";
        let stripped = "_ZN4ttnn16device_operation6detail29launch_operation_with_adapterINS0_26MeshDeviceOperationAdapterINS_4prim13SDPAOperationEEEEEvRKNT_22operation_attributes_tERKNS7_13tensor_args_tERNS7_21tensor_return_value_tEPN2tt8tt_metal11distributed10MeshDeviceE";
        assert_eq!(strip_constraints(mangled), stripped);
        // What `c++filt` prints for the stripped name starts with this. cpp_demangle 0.4.5
        // misplaces `const` in the parameters (`Adapter<…> const::operation_attributes_t&` for
        // `RKNT_22operation_attributes_tE`), which is why only the template arguments are read.
        let text = demangle(stripped).expect("the stripped name demangles");
        assert!(
            text.starts_with("void ttnn::device_operation::detail::launch_operation_with_adapter<ttnn::device_operation::MeshDeviceOperationAdapter<ttnn::prim::SDPAOperation> >(ttnn::device_operation::MeshDeviceOperationAdapter<ttnn::prim::SDPAOperation>"),
            "{text}"
        );
        assert_eq!(demangle(mangled), None, "cpp_demangle learnt Tk");
        assert_eq!(
            op_of(mangled),
            Some(OpSymbol {
                entry: Entry::LaunchOperationWithAdapter,
                function: "launch_operation_with_adapter".into(),
                op: Op::Named {
                    path: "ttnn::prim::SDPAOperation".into(),
                    name: "SDPAOperation".into()
                }
            })
        );

        // The lambda form, and std:: constraints (checked with c++filt).
        for (mangled, stripped, text) in [
            (
                "_Z1gIZ1fvEUlTkNSt7ConceptERKT_E_EvS3_",
                "_Z1gIZ1fvEUlRKT_E_EvS3_",
                "void g<f()::{lambda(auto:1 const&)#1}>(f()::{lambda(auto:1 const&)#1})",
            ),
            ("_Z1hITkSt7ConceptiEvT_", "_Z1hIiEvT_", "void h<int>(int)"),
            ("_Z1hITk1CiEvT_", "_Z1hIiEvT_", "void h<int>(int)"),
        ] {
            assert_eq!(strip_constraints(mangled), stripped, "{mangled}");
            assert_eq!(demangle(stripped).as_deref(), Some(text), "{stripped}");
        }

        // Nothing to strip, or `Tk` inside a source name: the same text, not copied.
        for name in ["_Z1fv", "_Z6fooTkBv", "_ZN2Tk2TkEv"] {
            assert!(matches!(strip_constraints(name), Cow::Borrowed(n) if n == name));
        }
        // Constraints whose prefixes would be substitution candidates (`a` in `a::C`), or with
        // template arguments, are refused rather than stripped into wrong substitutions.
        for name in [
            "_Z1hITkN1a1CEiEvT_",
            "_Z1hITkNSt7same_asIiEEiEvT_",
            "_Z1hITkSt7same_asIiEiEvT_",
        ] {
            assert!(matches!(strip_constraints(name), Cow::Borrowed(n) if n == name));
            assert_eq!(op_of(name), None);
        }
    }

    #[test]
    fn other_symbols_have_no_operation() {
        for name in [
            "",
            "_Z1fv",
            "_ZN4ttnn16device_operation6detail",
            // Neither the adapter nor launch / invoke: the argument is no operation.
            "_ZN4ttnn16device_operation6detail7computeITkNS0_22DeviceOperationConceptENS_4prim13SDPAOperationEEENT_21tensor_return_value_tERKNS5_22operation_attributes_tERKNS5_13tensor_args_tE",
            "_ZN4ttnn16device_operation6detail99launch",
        ] {
            assert_eq!(op_of(name), None, "{name}");
        }
    }

    #[test]
    fn enqueue_parameters_end_with_the_cache_hit_flag() {
        // 0.81.1's `enqueue_mesh_workload<MeshDeviceOperationAdapter<BinaryNgDeviceOperation>>`.
        let name = "_ZN4ttnn16device_operation6detail21enqueue_mesh_workloadITkNS0_36DeviceOperationWithMeshDeviceAdapterENS0_26MeshDeviceOperationAdapterINS_10operations9binary_ng23BinaryNgDeviceOperationEEEEEvRKNT_22operation_attributes_tERKNS7_13tensor_args_tERNS7_21tensor_return_value_tEPN2tt8tt_metal11distributed10MeshDeviceERNSG_12MeshWorkloadEb";
        let params = parameters(name).expect("demangles");
        assert_eq!(params.len(), 6, "{params:?}");
        assert_eq!(
            params[1],
            "ttnn::device_operation::MeshDeviceOperationAdapter<ttnn::operations::binary_ng::BinaryNgDeviceOperation>::tensor_args_t const&"
        );
        assert_eq!(
            params[2],
            "ttnn::device_operation::MeshDeviceOperationAdapter<ttnn::operations::binary_ng::BinaryNgDeviceOperation>::tensor_return_value_t&"
        );
        assert_eq!(params[3], "tt::tt_metal::distributed::MeshDevice*");
        assert!(params[4].ends_with('&'), "{}", params[4]);
        assert_eq!(params[5], "bool");
        assert_eq!(parameters("_Z1fv"), None);
    }

    #[test]
    fn launch_takes_the_operation_itself() {
        // 0.81.1's `launch<BinaryNgDeviceOperation>`, as `nm -D` lists it.
        let name = "_ZN4ttnn16device_operation6detail6launchITkNS0_22DeviceOperationConceptENS_10operations9binary_ng23BinaryNgDeviceOperationEEENT_21tensor_return_value_tERKNS6_22operation_attributes_tERKNS6_13tensor_args_tE";
        assert_eq!(
            op_of(name),
            Some(OpSymbol {
                entry: Entry::Launch,
                function: "launch".into(),
                op: Op::Named {
                    path: "ttnn::operations::binary_ng::BinaryNgDeviceOperation".into(),
                    name: "BinaryNgDeviceOperation".into()
                }
            })
        );
    }

    /// Library symbol tables are input: no prefix or corruption of a real name may panic.
    #[test]
    fn malformed_names_never_panic() {
        let rows = fixture(
            "ttnn-ops/ttnn-0.62.2-picked.symbols",
            "ttnn-ops/ttnn-0.62.2-picked.ops",
        );
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        const NOISE: [&str; 10] = ["Tk", "E", "I", "S_", "9", "N", "é", "_", "Ul", "L"];
        let mut named = 0;
        for (mangled, ..) in rows.iter().take(6) {
            for cut in 0..=mangled.len() {
                let prefix = &mangled[..cut];
                let _ = strip_constraints(prefix);
                named += op_of(prefix).is_some() as usize;
            }
            for _ in 0..300 {
                let at = (next() as usize) % mangled.len();
                let mut bad = mangled.clone();
                bad.insert_str(at, NOISE[(next() as usize) % NOISE.len()]);
                let cut = (next() as usize) % bad.len();
                if next() % 2 == 0 && bad.is_char_boundary(cut) {
                    bad.remove(cut);
                }
                let _ = strip_constraints(&bad);
                let _ = op_of(&bad);
            }
        }
        // The whole names are among the prefixes.
        assert!(named >= 6, "{named}");
    }

    #[test]
    fn short_names_drop_namespaces_not_template_arguments() {
        assert_eq!(last_component("a::b<c::d>::E<f::g>"), "E<f::g>");
        assert_eq!(last_component("Plain"), "Plain");
        assert_eq!(
            template_args("a<b, c>, d(e, f)>x"),
            Some(vec!["a<b, c>", "d(e, f)"])
        );
        assert_eq!(template_args("a, b"), None);
        assert_eq!(template_args("a)>"), None);
    }
}
