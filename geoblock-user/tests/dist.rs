//! dist/ as the README promises it. dist/kubernetes/ ("Kubernetes"): the
//! DaemonSet's host network, capabilities (and no privilege), mounts, probes
//! and port; the ConfigMap's geoblock.toml passing the checks of `geoblock
//! config check` and agreeing with those mounts and that port; the
//! Prometheus objects; the kustomization; the Containerfile. No cluster and
//! no container runtime are available where CI runs: this reads the files.
//! dist/prometheus/ ("Fleet"): alerting rules on metrics the daemon serves.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use geoblock::{
    daemon::{
        config::{Config, RunOptions},
        metrics::{render, DaemonState, Reloads},
    },
    data::table::PerFamily,
    kernel::counters::Stats,
};
use serde::Deserialize as _;
use serde_json::{json, Value};

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("geoblock-user is in the workspace").into()
}

fn read(path: &str) -> String {
    let path = root().join(path);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every YAML document of `file` (in dist/kubernetes) as JSON.
fn documents(file: &str) -> Vec<Value> {
    yaml(&format!("dist/kubernetes/{file}"))
}

/// Every YAML document of `file` (in the repository) as JSON.
fn yaml(file: &str) -> Vec<Value> {
    let text = read(file);
    serde_norway::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).unwrap_or_else(|e| panic!("{file}: {e}")))
        .collect()
}

/// The one object of `kind` in `file`.
fn object(file: &str, kind: &str) -> Value {
    let mut found = documents(file).into_iter().filter(|d| d["kind"] == kind);
    let object = found.next().unwrap_or_else(|| panic!("{file}: no {kind}"));
    assert!(found.next().is_none(), "{file}: more than one {kind}");
    object
}

/// The value at `pointer` (RFC 6901: `/spec/template/...`); a test fails
/// naming what is missing.
fn at<'a>(value: &'a Value, pointer: &str) -> &'a Value {
    value.pointer(pointer).unwrap_or_else(|| panic!("{} has no {pointer}", value["kind"]))
}

fn daemonset() -> Value {
    object("daemonset.yaml", "DaemonSet")
}

fn pod(daemonset: &Value) -> &Value {
    at(daemonset, "/spec/template/spec")
}

/// The DaemonSet's geoblock container.
fn container(daemonset: &Value) -> &Value {
    let containers = at(pod(daemonset), "/containers").as_array().expect("a list of containers");
    containers.iter().find(|c| c["name"] == "geoblock").expect("a container named geoblock")
}

/// The ConfigMap's geoblock.toml, through what `geoblock config check` runs
/// on a file: the parser, the validation and the data load. Once for all
/// tests (they run at once, and loading takes a second).
fn configured() -> &'static RunOptions {
    static OPTIONS: OnceLock<RunOptions> = OnceLock::new();
    OPTIONS.get_or_init(|| {
        let configmap = object("configmap.yaml", "ConfigMap");
        let toml = at(&configmap, "/data/geoblock.toml").as_str().expect("geoblock.toml is text");
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kubernetes-{}.toml", std::process::id()));
        fs::write(&path, toml).unwrap();
        let opts = Config::load(&path, true).and_then(Config::resolve);
        fs::remove_file(&path).unwrap();
        let opts = opts.unwrap_or_else(|e| panic!("configmap.yaml: geoblock.toml: {e}"));
        opts.data.load().unwrap_or_else(|e| panic!("configmap.yaml: geoblock.toml: data: {e}"));
        opts
    })
}

/// The volume mounted at `path` in the geoblock container, and the mount.
fn mounted<'a>(daemonset: &'a Value, path: &str) -> (&'a Value, &'a Value) {
    let mounts = at(container(daemonset), "/volumeMounts").as_array().expect("a list of mounts");
    let mount = mounts.iter().find(|m| m["mountPath"] == path).unwrap_or_else(|| panic!("nothing mounted at {path}"));
    let volumes = at(pod(daemonset), "/volumes").as_array().expect("a list of volumes");
    let volume =
        volumes.iter().find(|v| v["name"] == mount["name"]).unwrap_or_else(|| panic!("no volume {}", mount["name"]));
    (volume, mount)
}

/// The mount path of the volume holding `path`.
fn mount_holding<'a>(daemonset: &'a Value, path: &Path) -> &'a str {
    let mounts = at(container(daemonset), "/volumeMounts").as_array().expect("a list of mounts");
    let holding = mounts.iter().filter_map(|m| m["mountPath"].as_str()).filter(|mount| path.starts_with(mount));
    holding.max_by_key(|mount| mount.len()).unwrap_or_else(|| panic!("{} is on no volume", path.display()))
}

#[test]
fn the_daemonset_runs_on_every_node_in_its_network() {
    let daemonset = daemonset();
    let pod = pod(&daemonset);
    assert_eq!(pod["hostNetwork"], true);
    // The node's resolv.conf: the lock-out guard protects the node's resolvers.
    assert_eq!(pod["dnsPolicy"], "Default");
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    let tolerations = at(pod, "/tolerations").as_array().unwrap();
    assert!(tolerations.contains(&json!({"operator": "Exists"})), "not every taint tolerated: {tolerations:?}");
    assert!(at(pod, "/terminationGracePeriodSeconds").as_u64().is_some());
    assert_eq!(
        at(&daemonset, "/spec/updateStrategy"),
        &json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}})
    );
    assert_eq!(at(&daemonset, "/spec/selector/matchLabels"), at(&daemonset, "/spec/template/metadata/labels"));
}

#[test]
fn the_container_has_the_units_capabilities_and_no_privilege() {
    let daemonset = daemonset();
    let security = at(container(&daemonset), "/securityContext");
    let added: BTreeSet<&str> =
        at(security, "/capabilities/add").as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(at(security, "/capabilities/drop"), &json!(["ALL"]));
    // The same three as dist/geoblock.service.
    let unit = read("dist/geoblock.service");
    let bounding =
        unit.lines().find_map(|l| l.strip_prefix("CapabilityBoundingSet=")).expect("the unit's capabilities");
    let unit_caps: BTreeSet<&str> = bounding.split_whitespace().filter_map(|c| c.strip_prefix("CAP_")).collect();
    assert_eq!(added, unit_caps);
    assert_eq!(added, BTreeSet::from(["BPF", "NET_ADMIN", "PERFMON"]));
    assert_eq!(security["privileged"], false);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["runAsUser"], 0);
    // The default AppArmor profile denies pins in /sys/fs/bpf.
    assert_eq!(at(security, "/appArmorProfile/type"), "Unconfined");
    assert_eq!(at(security, "/seccompProfile/type"), "RuntimeDefault");
}

#[test]
fn enforcement_lives_on_the_host_and_the_config_agrees_with_the_mounts() {
    let daemonset = daemonset();
    let opts = configured();
    // The pins: the host's bpffs, seeing a bpffs the host mounts later.
    let (bpffs, mount) = mounted(&daemonset, "/sys/fs/bpf");
    assert_eq!(bpffs["hostPath"], json!({"path": "/sys/fs/bpf", "type": "Directory"}));
    assert_eq!(mount["mountPropagation"], "HostToContainer");
    assert!(
        opts.state_dir.starts_with("/sys/fs/bpf"),
        "state_dir {} is not on the host's bpffs",
        opts.state_dir.display()
    );
    assert!(!opts.detach_on_exit, "a pod that stops would remove enforcement");
    // The socket hooks: the host's cgroup v2 root, not the container's own cgroup.
    let cgroup = opts.cgroup.as_deref().expect("cgroup set: the container's own cgroup is not the host's root");
    let (host_cgroup, mount) = mounted(&daemonset, cgroup.to_str().unwrap());
    assert_eq!(host_cgroup["hostPath"], json!({"path": "/sys/fs/cgroup", "type": "Directory"}));
    assert_eq!(mount["readOnly"], true);
    // The control socket, for kubectl exec ... geoblock status.
    let (run, _) = mounted(&daemonset, opts.control_socket.parent().unwrap().to_str().unwrap());
    assert!(run["emptyDir"].is_object(), "{run}");
    // Downloads outlive the pod.
    let (cache, _) = mounted(&daemonset, opts.data.cache_dir.to_str().unwrap());
    assert_eq!(at(cache, "/hostPath/path"), opts.data.cache_dir.to_str().unwrap());
    // The config itself.
    let (config, mount) = mounted(&daemonset, "/etc/geoblock");
    assert_eq!(at(config, "/configMap/name"), at(&object("configmap.yaml", "ConfigMap"), "/metadata/name"));
    assert_eq!(mount["readOnly"], true);
}

#[test]
fn the_configmap_starts_in_monitor_mode() {
    let opts = configured();
    assert!(opts.policy.rules.iter().all(|rule| rule.monitor), "{}", opts.policy);
    assert!(!opts.interfaces.is_empty());
}

#[test]
fn probes_and_metrics_use_the_port_the_daemon_serves() {
    let daemonset = daemonset();
    let container = container(&daemonset);
    let port = opts_metrics_port();
    assert_eq!(at(container, "/ports"), &json!([{"name": "metrics", "containerPort": port, "protocol": "TCP"}]));
    for probe in ["startupProbe", "readinessProbe"] {
        assert_eq!(
            at(container, &format!("/{probe}/httpGet")),
            &json!({"path": "/ready", "port": "metrics"}),
            "{probe}"
        );
    }
    // Liveness asks the main loop, and only once the startup probe passed.
    assert_eq!(at(container, "/livenessProbe/httpGet"), &json!({"path": "/metrics", "port": "metrics"}));
    let startup = at(container, "/startupProbe");
    let patience = at(startup, "/periodSeconds").as_u64().unwrap() * at(startup, "/failureThreshold").as_u64().unwrap();
    assert!(patience >= 300, "a first start that downloads its data gets {patience} s");
    let annotations = at(&daemonset, "/spec/template/metadata/annotations");
    assert_eq!(
        annotations,
        &json!({"prometheus.io/scrape": "true", "prometheus.io/port": port.to_string(), "prometheus.io/path": "/metrics"})
    );
}

/// The port of `metrics` in the ConfigMap, which must listen beyond loopback.
fn opts_metrics_port() -> u16 {
    let metrics = configured().metrics.expect("metrics served: the probes ask for them");
    assert!(metrics.ip().is_unspecified(), "the kubelet and Prometheus reach {metrics}? Not on loopback");
    metrics.port()
}

#[test]
fn the_servicemonitor_scrapes_every_pod() {
    let daemonset = daemonset();
    let service = object("servicemonitor.yaml", "Service");
    let monitor = object("servicemonitor.yaml", "ServiceMonitor");
    assert_eq!(at(&service, "/spec/clusterIP"), "None");
    assert_eq!(at(&service, "/spec/selector"), at(&daemonset, "/spec/template/metadata/labels"));
    assert_eq!(at(&service, "/spec/ports/0/targetPort"), "metrics");
    assert_eq!(at(&monitor, "/spec/selector/matchLabels"), at(&service, "/metadata/labels"));
    assert_eq!(at(&monitor, "/spec/endpoints/0/port"), at(&service, "/spec/ports/0/name"));
    assert_eq!(at(&monitor, "/spec/endpoints/0/path"), "/metrics");
}

#[test]
fn the_kustomization_applies_every_manifest_in_one_namespace() {
    let kustomization = documents("kustomization.yaml").remove(0);
    let listed: BTreeSet<&str> =
        at(&kustomization, "/resources").as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let dir = root().join("dist/kubernetes");
    let files: Vec<String> =
        fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let manifests: BTreeSet<&str> =
        files.iter().map(String::as_str).filter(|f| f.ends_with(".yaml") && *f != "kustomization.yaml").collect();
    assert_eq!(listed, manifests);
    let namespace = object("namespace.yaml", "Namespace");
    for file in &manifests {
        for document in documents(file).iter().filter(|d| d["kind"] != "Namespace") {
            assert_eq!(
                document["metadata"]["namespace"], namespace["metadata"]["name"],
                "{file}: {}",
                document["kind"]
            );
        }
    }
}

/// A Containerfile's instructions, continuation lines joined, comments out.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .iter()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (keyword, arguments) = l.split_once(' ').unwrap_or((l, ""));
            (keyword.to_uppercase(), arguments.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect()
}

/// The string value of `const NAME` in a Rust source.
fn rust_const<'a>(source: &'a str, name: &str) -> &'a str {
    let after = &source[source.find(&format!("const {name}")).unwrap_or_else(|| panic!("no const {name}"))..];
    after.split('"').nth(1).unwrap_or_else(|| panic!("const {name} is no string"))
}

#[test]
fn the_containerfile_builds_with_the_toolchain_of_record_into_a_minimal_image() {
    let steps = instructions(&read("dist/kubernetes/Containerfile"));
    let from: Vec<&str> = steps.iter().filter(|(k, _)| k == "FROM").map(|(_, a)| a.as_str()).collect();
    assert_eq!(from, ["docker.io/library/debian:bookworm AS builder", "gcr.io/distroless/cc-debian12"]);
    let run: Vec<&str> = steps.iter().filter(|(k, _)| k == "RUN").map(|(_, a)| a.as_str()).collect();
    let run = run.join("\n");
    // What `cargo xtask setup` installs to build (not its linters).
    let setup = read("xtask/src/setup.rs");
    for package in ["rustc-web", "cargo-web", "libstd-rust-web-dev-bpf", rust_const(&setup, "LLVM_PACKAGE")] {
        assert!(setup.contains(&format!("\"{package}\"")), "xtask setup no longer installs {package}");
        assert!(run.contains(&format!(" {package} ")), "the builder does not install {package}");
    }
    let linker = format!(
        "LLVM_PREFIX={} cargo install bpf-linker --version {} --locked --no-default-features --features {}",
        rust_const(&setup, "LLVM_PREFIX"),
        rust_const(&setup, "BPF_LINKER_VERSION"),
        rust_const(&setup, "LLVM_FEATURE")
    );
    assert!(run.contains(&linker), "bpf-linker is not built as xtask setup builds it: {linker}");
    assert!(run.contains("cargo build --release --locked -p geoblock-user --bin geoblock"), "{run}");
    let runtime = steps.iter().skip_while(|(k, a)| !(k == "FROM" && a.starts_with("gcr.io/"))).collect::<Vec<_>>();
    assert!(runtime
        .contains(&&("COPY".into(), "--from=builder /src/target/release/geoblock /usr/local/bin/geoblock".into())));
    let (_, entrypoint) = runtime.iter().find(|(k, _)| k == "ENTRYPOINT").expect("an ENTRYPOINT");
    let entrypoint: Vec<String> = serde_json::from_str(entrypoint).expect("ENTRYPOINT in exec form");
    assert_eq!(entrypoint, ["/usr/local/bin/geoblock", "run", "--config", "/etc/geoblock/geoblock.toml"]);
    // The config it reads is the ConfigMap's key, where the DaemonSet mounts it.
    let daemonset = daemonset();
    let config = Path::new(&entrypoint[3]);
    assert_eq!(mount_holding(&daemonset, config), "/etc/geoblock");
    let key = config.file_name().unwrap().to_str().unwrap();
    assert!(at(&object("configmap.yaml", "ConfigMap"), "/data").get(key).is_some(), "the ConfigMap has no {key}");
    assert!(read(".dockerignore").lines().any(|l| l == "target"), "the build context would carry target/");
}

/// The names a scrape of a daemon with every feature on shows: each
/// family's, and a counter's with `_total`.
fn exported_metrics() -> BTreeSet<String> {
    let reloads = Reloads::default();
    let state = DaemonState {
        generation: 1,
        prefixes_v4: 1,
        prefixes_v6: 1,
        table_memory: PerFamily::default(),
        trie_nodes: PerFamily::default(),
        flow_table: (0, 0),
        sources: vec![("https://example.net/dbip.csv".into(), Some(1.0))],
        interfaces: vec![("eth0".into(), true)],
        reloads: &reloads,
        policy: Some(("https://example.net/policy.toml".into(), 1, 0)),
    };
    let text = render(&Stats::default(), &state);
    let mut names = BTreeSet::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').expect("# TYPE NAME KIND");
        names.insert(name.to_string());
        if kind == "counter" {
            names.insert(format!("{name}_total"));
        }
    }
    names
}

#[test]
fn the_alerting_rules_watch_what_the_daemon_exports() {
    let exported = exported_metrics();
    let rules = yaml("dist/prometheus/geoblock-alerts.yml");
    let rules = at(&rules[0], "/groups/0/rules").as_array().expect("a list of rules");
    let alerts: BTreeSet<&str> = rules.iter().map(|r| r["alert"].as_str().expect("every rule alerts")).collect();
    // The README's "Fleet" table: not attached, data too old, policy fetch failing.
    for promised in ["GeoblockNotAttached", "GeoblockDataTooOld", "GeoblockPolicyFetchFailing", "GeoblockPolicyBehind"]
    {
        assert!(alerts.contains(promised), "no {promised} in {alerts:?}");
    }
    for rule in rules {
        let expr = rule["expr"].as_str().expect("expr");
        assert!(rule["for"].is_string() && rule["labels"]["severity"].is_string(), "{rule}");
        let named =
            expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("geoblock_"));
        for metric in named {
            assert!(exported.contains(metric), "{}: {metric} is not exported ({exported:?})", rule["alert"]);
        }
    }
}
