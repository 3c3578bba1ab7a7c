//! SIGHUP: re-read the `--config` file, apply what can change at run time, log the diff.

use std::path::PathBuf;

use super::{Resolved, Running, Settings};

/// The log target of the registrar's own lines (as before the module was split).
const LOG_TARGET: &str = "rsp::registrar";

/// What SIGHUP re-reads: the `--config` file under the same flags.
pub struct Reload {
    pub flags: Settings,
    pub path: Option<PathBuf>,
    /// The settings in force.
    pub current: Resolved,
}

impl Reload {
    /// Re-read the file and apply what can change at run time; log one line saying what
    /// changed, and a warning for what needs a restart. An invalid file changes nothing.
    pub async fn reload(&mut self, running: &Running) {
        // Certificates are re-read with or without a config file: new handshakes use the
        // new one, open connections keep theirs.
        if let Some(tls) = &self.current.transport.tls {
            match tls.reload() {
                Ok(()) => tracing::info!(target: LOG_TARGET,
                    "SIGHUP: TLS certificate and key re-read"),
                Err(e) => tracing::error!(target: LOG_TARGET,
                    "SIGHUP: TLS certificate not reloaded ({e}); the one in use stays"),
            }
        }
        let Some(path) = self.path.clone() else {
            tracing::warn!(target: LOG_TARGET, "SIGHUP: the registrar was started without --config; nothing to reload");
            return;
        };
        let new = match Settings::load(self.flags.clone(), Some(&path)).and_then(|s| s.resolve()) {
            Ok(new) => new,
            Err(e) => {
                tracing::error!(target: LOG_TARGET, "SIGHUP: {e:#}; configuration not reloaded, the running one stays");
                return;
            }
        };
        // What needs a restart (sockets, identity) keeps its running value; the rest
        // (the whole core configuration, the log settings) is applied.
        let cur = &self.current;
        let mut next = new.clone();
        next.listen = cur.listen.clone();
        next.explicit_listen = cur.explicit_listen;
        next.admin = cur.admin;
        next.explicit_admin = cur.explicit_admin;
        next.admin_allow_remote = cur.admin_allow_remote;
        next.core.server_id = cur.core.server_id;
        next.core.lifetime_unit = cur.core.lifetime_unit;
        next.transport = cur.transport.clone();
        // The shell's hard connection limit sits above the core's: both stay.
        next.core.connections.max_connections = cur.core.connections.max_connections;
        next.wire_log = cur.wire_log.clone();
        // ENRP: the listeners, the presence group and the start-up phase need a restart;
        // the static peers (added ones are contacted, dropped ones stay as learned peers
        // while they talk), the timers, the response size, the election rule and the
        // peer policy apply at once (each timer from its next arming).
        next.enrp_listen = cur.enrp_listen.clone();
        next.explicit_enrp_listen = cur.explicit_enrp_listen;
        next.core.enrp.presence_group = cur.core.enrp.presence_group;
        next.core.enrp.mentor_discovery_timeout = cur.core.enrp.mentor_discovery_timeout;
        next.dns = cur.dns.clone(); // the DNS socket stays as bound
        next.csp = cur.csp.clone(); // the CSP reporter runs with its start-up settings
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "unset".into());
        let mut applied = Vec::new();
        let mut restart = Vec::new();
        for (((key, old), (_, now)), (_, wanted)) in cur
            .listing()
            .into_iter()
            .zip(next.listing())
            .zip(new.listing())
        {
            if old != now {
                applied.push(format!("{key} {} -> {}", show(&old), show(&now)));
            }
            if now != wanted {
                restart.push(format!("{key} {} -> {}", show(&now), show(&wanted)));
            }
        }
        if running
            .apply(next.core.clone(), next.log_summary_interval)
            .await
            .is_err()
        {
            return; // shutting down
        }
        let mut notes = String::new();
        match crate::logging::apply(&next.log_level, next.log_json) {
            Ok(crate::logging::Applied::FilterFromEnv)
                if applied.iter().any(|c| c.starts_with("log_level ")) =>
            {
                notes = " (RUST_LOG is set and keeps deciding the log filter)".into();
            }
            Ok(_) => {}
            Err(e) => tracing::error!(target: LOG_TARGET, "SIGHUP: log settings: {e:#}"),
        }
        self.current = next;
        if applied.is_empty() {
            tracing::info!(target: LOG_TARGET,
                "SIGHUP: configuration reloaded from {}: nothing changed",
                path.display()
            );
        } else {
            tracing::info!(target: LOG_TARGET,
                "SIGHUP: configuration reloaded from {}: {}{notes}",
                path.display(),
                applied.join(", ")
            );
        }
        if !restart.is_empty() {
            tracing::warn!(target: LOG_TARGET,
                "SIGHUP: {} changed in {} but take effect only after a restart; the running \
                 values stay",
                restart.join(", "),
                path.display()
            );
        }
    }
}
