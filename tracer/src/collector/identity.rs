//! Who a process is beyond its pid: its command name and control group (container, systemd
//! unit). The session reads /proc; parsing here is pure so it can be tested on any machine.

use serde::Serialize;

/// What the session learnt about a process from /proc, handed to [`super::Collector::describe`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    pub comm: Option<String>,
    pub cgroup: Option<Cgroup>,
}

/// A process's control group, with the container or systemd unit it names, if any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cgroup {
    pub path: String,
    /// A container runtime's id (docker, containerd, CRI-O, podman, kubepods).
    pub container_id: Option<String>,
    /// The systemd unit: the last `*.service` component, or a `*.scope` that is no container.
    pub systemd_unit: Option<String>,
}

impl Cgroup {
    pub fn from_path(path: &str) -> Cgroup {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let mut container_id = None;
        for (i, p) in parts.iter().enumerate() {
            if let Some(id) = container_of_component(p) {
                container_id = Some(id);
            } else if is_id(p)
                && i > 0
                // cgroupfs drivers: /docker/<id>, /kubepods/burstable/pod<uid>/<id>.
                && (matches!(parts[i - 1], "docker" | "containerd" | "lxc")
                    || parts[..i].iter().any(|q| q.starts_with("kubepods")))
            {
                container_id = Some(p.to_string());
            }
        }
        let systemd_unit = parts
            .iter()
            .rev()
            .find(|p| {
                p.ends_with(".service")
                    || (p.ends_with(".scope") && container_of_component(p).is_none())
            })
            .map(|p| p.to_string());
        Cgroup {
            path: path.to_string(),
            container_id,
            systemd_unit,
        }
    }

    /// From the text of /proc/PID/cgroup: the v2 line (`0::/path`), else v1's `name=systemd`
    /// hierarchy, else the first line.
    pub fn from_proc_cgroup(text: &str) -> Option<Cgroup> {
        let lines: Vec<(&str, &str)> = text
            .lines()
            .filter_map(|l| {
                let mut it = l.splitn(3, ':');
                let (id, controllers, path) = (it.next()?, it.next()?, it.next()?);
                Some((
                    if id == "0" && controllers.is_empty() {
                        ""
                    } else {
                        controllers
                    },
                    path,
                ))
            })
            .collect();
        let path = lines
            .iter()
            .find(|(c, _)| c.is_empty())
            .or_else(|| lines.iter().find(|(c, _)| *c == "name=systemd"))
            .or_else(|| lines.first())
            .map(|(_, p)| *p)?;
        Some(Cgroup::from_path(path.trim()))
    }
}

/// A container id spelled in one path component by systemd-driven runtimes:
/// `docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`.
fn container_of_component(p: &str) -> Option<String> {
    let stem = p.strip_suffix(".scope")?;
    ["docker-", "cri-containerd-", "crio-", "libpod-"]
        .iter()
        .find_map(|prefix| stem.strip_prefix(prefix))
        .filter(|id| is_id(id))
        .map(str::to_string)
}

/// Runtimes' ids are long lowercase hex (64 for docker and containerd).
fn is_id(s: &str) -> bool {
    s.len() >= 12
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd";

    #[test]
    fn docker_under_systemd() {
        let c = Cgroup::from_path(&format!("/system.slice/docker-{ID}.scope"));
        assert_eq!(c.container_id.as_deref(), Some(ID));
        assert_eq!(c.systemd_unit, None, "a container scope is not a unit");
    }

    #[test]
    fn docker_with_the_cgroupfs_driver() {
        let c = Cgroup::from_path(&format!("/docker/{ID}"));
        assert_eq!(c.container_id.as_deref(), Some(ID));
    }

    #[test]
    fn kubernetes_pods() {
        let c = Cgroup::from_path(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b3c4d_5e6f_7a8b_9c0d_e1f2a3b4c5d6.slice/cri-containerd-{ID}.scope"
        ));
        assert_eq!(c.container_id.as_deref(), Some(ID));
        let c = Cgroup::from_path(&format!(
            "/kubepods/burstable/pod1a2b3c4d-5e6f-7a8b-9c0d-e1f2a3b4c5d6/{ID}"
        ));
        assert_eq!(c.container_id.as_deref(), Some(ID));
        let c = Cgroup::from_path(&format!("/kubepods.slice/crio-{ID}.scope"));
        assert_eq!(c.container_id.as_deref(), Some(ID));
    }

    #[test]
    fn podman() {
        let c = Cgroup::from_path(&format!(
            "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"
        ));
        assert_eq!(c.container_id.as_deref(), Some(ID));
        assert_eq!(c.systemd_unit.as_deref(), Some("user@1000.service"));
    }

    #[test]
    fn systemd_units() {
        let c = Cgroup::from_path("/system.slice/tt-inference.service");
        assert_eq!(c.systemd_unit.as_deref(), Some("tt-inference.service"));
        assert_eq!(c.container_id, None);
        let c = Cgroup::from_path("/user.slice/user-1000.slice/session-4.scope");
        assert_eq!(c.systemd_unit.as_deref(), Some("session-4.scope"));
        let c = Cgroup::from_path("/");
        assert_eq!((c.container_id, c.systemd_unit), (None, None));
    }

    #[test]
    fn proc_cgroup_text() {
        let v2 = "0::/system.slice/ssh.service\n";
        assert_eq!(
            Cgroup::from_proc_cgroup(v2).unwrap().path,
            "/system.slice/ssh.service"
        );
        let v1 = format!(
            "12:cpuset:/docker/{ID}\n11:memory:/docker/{ID}\n1:name=systemd:/system.slice/docker-{ID}.scope\n"
        );
        let c = Cgroup::from_proc_cgroup(&v1).unwrap();
        assert_eq!(c.path, format!("/system.slice/docker-{ID}.scope"));
        assert_eq!(c.container_id.as_deref(), Some(ID));
        let hybrid = format!("1:name=systemd:/user.slice\n0::/docker/{ID}\n");
        assert_eq!(
            Cgroup::from_proc_cgroup(&hybrid).unwrap().path,
            format!("/docker/{ID}")
        );
        let first = "5:cpu,cpuacct:/batch\n";
        assert_eq!(Cgroup::from_proc_cgroup(first).unwrap().path, "/batch");
        assert_eq!(Cgroup::from_proc_cgroup(""), None);
    }
}
