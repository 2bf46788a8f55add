//! The generic tt-metal probes: one uprobe and one uretprobe, attached to every resolved
//! function with the recipe index as cookie (per-point perf-event uprobes, or the `_multi`
//! twins in one multi-uprobe link per library).
//!
//! - `Context` recipes push/pop an origin on the thread's context stack (fabric, dispatch, …)
//!   and emit enter/exit events (phase timing, device being configured).
//! - `Call` recipes emit the fields at entry (kernel-binary write, device constructor, close).
//! - `CallWithReturn` recipes keep the entry fields and emit them with the return value
//!   (allocations: size at entry, address on return).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
    EbpfContext,
};
use tracer_common::{
    counters::Counter, Event, EventKind, FieldOp, FieldRule, Recipe, RecipeKind,
    CONTEXT_NAMED_BY_COOKIE, MAX_FIELDS,
};

use crate::{
    context,
    emit::{self, submit, Header},
    maps::{count, PendingKey, PENDING, RECIPES},
    process::{registered_instance, traced_instance},
};

#[uprobe]
pub fn tt_entry(ctx: ProbeContext) -> u32 {
    let _ = try_entry(&ctx);
    0
}

#[uretprobe]
pub fn tt_return(ctx: RetProbeContext) -> u32 {
    let _ = try_return(&ctx);
    0
}

/// The same probes for one multi-uprobe link per library (cookie per offset): a program is
/// loaded for either kind of attachment, never both, so each kind has its own entry point.
#[uprobe(multi)]
pub fn tt_entry_multi(ctx: ProbeContext) -> u32 {
    let _ = try_entry(&ctx);
    0
}

#[uretprobe(multi)]
pub fn tt_return_multi(ctx: RetProbeContext) -> u32 {
    let _ = try_return(&ctx);
    0
}

fn cookie(ctx: &impl EbpfContext) -> u64 {
    // SAFETY: helper available to kprobe-type programs since 5.15.
    unsafe { aya_ebpf::helpers::generated::bpf_get_attach_cookie(ctx.as_ptr()) }
}

/// The recipe of an attach point (an array lookup the verifier inlines).
#[inline(always)]
fn recipe(ctx: &impl EbpfContext, cookie: u64) -> Option<&'static Recipe> {
    let r = RECIPES
        .get(cookie as u32)
        .filter(|r| r.kind != RecipeKind::None as u8);
    if r.is_none() {
        no_recipe(ctx, cookie);
    }
    r
}

/// A missing recipe is a loader bug: said once per hit through aya-log (rare by construction,
/// so the log's cost does not matter; out of line, so the hot path stays small).
#[inline(never)]
fn no_recipe(ctx: &impl EbpfContext, cookie: u64) {
    aya_log_ebpf::warn!(ctx, "attach cookie {} has no recipe", cookie);
}

/// The six System V argument registers, read at constant offsets: the verifier refuses a
/// context access at a variable offset.
fn arg_registers(ctx: &ProbeContext) -> [u64; 6] {
    [
        ctx.arg(0).unwrap_or(0),
        ctx.arg(1).unwrap_or(0),
        ctx.arg(2).unwrap_or(0),
        ctx.arg(3).unwrap_or(0),
        ctx.arg(4).unwrap_or(0),
        ctx.arg(5).unwrap_or(0),
    ]
}

fn read_field(args: &[u64; 6], rule: &FieldRule) -> u64 {
    let Some(&reg) = args.get(rule.arg as usize) else {
        return 0;
    };
    let at = reg.wrapping_add(rule.offset as u64);
    let loaded = match rule.op {
        x if x == FieldOp::Reg as u8 => return reg,
        x if x == FieldOp::Load64 as u8 => {
            // SAFETY: bpf_probe_read_user validates the address.
            unsafe { bpf_probe_read_user(at as *const u64) }
        }
        x if x == FieldOp::Load32 as u8 => {
            // SAFETY: as above.
            unsafe { bpf_probe_read_user(at as *const u32) }.map(u64::from)
        }
        x if x == FieldOp::VecBytes as u8 => {
            // SAFETY: as above; begin at +0, end at +8 (libstdc++ std::vector).
            unsafe { bpf_probe_read_user(at as *const [u64; 2]) }.map(|[b, e]| e.wrapping_sub(b))
        }
        _ => return 0,
    };
    match loaded {
        Ok(v) => v,
        Err(_) => {
            count(Counter::FieldReadFailed);
            0
        }
    }
}

/// The recipe's fields: only its `used_fields` first rules are looked at (most roles read one
/// or two), unrolled rather than a loop over all of them.
#[inline(always)]
fn read_fields(args: &[u64; 6], recipe: &Recipe) -> [u64; MAX_FIELDS] {
    let n = recipe.used_fields;
    let [r0, r1, r2, r3] = &recipe.fields;
    let f0 = if n > 0 { read_field(args, r0) } else { 0 };
    let f1 = if n > 1 { read_field(args, r1) } else { 0 };
    let f2 = if n > 2 { read_field(args, r2) } else { 0 };
    let f3 = if n > 3 { read_field(args, r3) } else { 0 };
    [f0, f1, f2, f3]
}

#[inline(always)]
fn try_entry(ctx: &ProbeContext) -> Result<(), ()> {
    let cookie = cookie(ctx);
    let recipe = recipe(ctx, cookie).ok_or(())?;
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // Not traced (another process mapping the library): nothing pushed, nothing kept.
    let instance = traced_instance((pid_tgid >> 32) as u32, now).ok_or(())?;

    let args = arg_registers(ctx);
    let fields = read_fields(&args, recipe);
    let (origin, this, depth) = context::innermost(pid_tgid);

    if recipe.kind == RecipeKind::Call as u8 {
        // The hot path (kernel binaries, device calls): written once, straight into the ring.
        emit::event(
            recipe.ring,
            &Header {
                ts_ns: now,
                instance,
                pid_tgid,
                role: recipe.role,
                kind: EventKind::Call,
                origin,
                depth: depth as u8,
                parent_origin: 0,
                library: recipe.library,
                context_this: this,
                parent_this: 0,
            },
            &fields,
            0,
        );
        return Ok(());
    }

    if recipe.kind == RecipeKind::Context as u8 {
        // `this` (or a result pointer) names the context; the enclosing one links it to its
        // parent (e.g. a mesh allocator to the mesh being created).
        let own = match recipe.context_arg {
            CONTEXT_NAMED_BY_COOKIE => cookie,
            arg => args.get(arg as usize).copied().unwrap_or(0),
        };
        let new_depth = context::push(pid_tgid, recipe.origin, own).ok_or(())?;
        emit::event(
            recipe.ring,
            &Header {
                ts_ns: now,
                instance,
                pid_tgid,
                role: recipe.role,
                kind: EventKind::ContextEnter,
                origin: recipe.origin,
                depth: new_depth as u8,
                parent_origin: origin,
                library: recipe.library,
                context_this: own,
                parent_this: this,
            },
            &fields,
            0,
        );
        return Ok(());
    }

    if recipe.kind == RecipeKind::CallWithReturn as u8 {
        let mut ev = Event::new(
            EventKind::Call,
            recipe.role,
            now,
            instance,
            (pid_tgid >> 32) as u32,
            pid_tgid as u32,
        );
        ev.library = recipe.library;
        ev.origin = origin;
        ev.context_this = this;
        ev.depth = depth as u8;
        ev.fields = fields;
        let key = PendingKey { pid_tgid, cookie };
        if PENDING.insert(&key, &ev, 0).is_err() {
            count(Counter::PendingMapFull);
        }
    }
    Ok(())
}

#[inline(always)]
fn try_return(ctx: &RetProbeContext) -> Result<(), ()> {
    let cookie = cookie(ctx);
    let recipe = recipe(ctx, cookie).ok_or(())?;
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };

    if recipe.kind == RecipeKind::Context as u8 {
        // Its entry registered the process if it is traced at all.
        let Some(instance) = registered_instance((pid_tgid >> 32) as u32) else {
            return Ok(());
        };
        let (origin, this, _) = context::innermost(pid_tgid);
        let depth = context::pop(pid_tgid);
        if depth == 0 {
            count(Counter::ReturnWithoutEntry);
            return Err(());
        }
        emit::event(
            recipe.ring,
            &Header {
                ts_ns: now,
                instance,
                pid_tgid,
                role: recipe.role,
                kind: EventKind::ContextExit,
                origin,
                depth: depth as u8,
                parent_origin: 0,
                library: recipe.library,
                context_this: this,
                parent_this: 0,
            },
            &[0; MAX_FIELDS],
            0,
        );
        return Ok(());
    }

    if recipe.kind == RecipeKind::CallWithReturn as u8 {
        let key = PendingKey { pid_tgid, cookie };
        let Some(entry) = PENDING.get_ptr_mut(&key) else {
            if registered_instance((pid_tgid >> 32) as u32).is_none() {
                return Ok(()); // not traced: its entry kept nothing
            }
            count(Counter::ReturnWithoutEntry);
            return Err(());
        };
        // Completed in the map and sent from there (no copy on the stack), then removed.
        // SAFETY: the map value of this thread's own key; only this thread writes it.
        let ev = unsafe { &mut *entry };
        ev.ret = ctx.ret::<u64>();
        ev.ts_ns = now;
        submit(recipe.ring, ev);
        let _ = PENDING.remove(&key);
    }
    Ok(())
}
