//! SASL GSSAPI (Kerberos) for a mount: its client principal, from a keytab or from the
//! ticket cache, and the ZooKeeper service it authenticates to.
//!
//! zookeeper-client's GSSAPI (rsasl, over the system's MIT GSS-API library) takes the
//! default initiator credential of the process, with no way to name a principal or a
//! keytab. So the mount sets that default before anything else runs:
//!
//! * with a keytab: `KRB5_CLIENT_KTNAME` names it and `KRB5CCNAME` a ticket cache in
//!   the process's memory (nothing written to disk, the user's own cache untouched).
//!   MIT's library gets the ticket-granting ticket from the keytab for the principal
//!   asked for, and gets a new one from the keytab when it runs out: a mount with a
//!   keytab never needs kinit;
//! * without: the ticket cache as the user has it (`KRB5CCNAME` or the default cache),
//!   whose tickets the user (kinit, k5start, sssd) keeps fresh.
//!
//! Then, still before connecting, it gets a ticket for the first server's service
//! principal (`SERVICE/HOST`): a key that is not the principal's, a principal or a
//! service the KDC does not know, an expired ticket cache, are said at mount time in
//! Kerberos's words, rather than as a connection ZooKeeper drops.
//!
//! The keytab holds the principal's keys: it is checked as the TLS key is (yours or
//! root's, no access for group or others).

use std::path::PathBuf;

use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{OidSet, GSS_MECH_KRB5, GSS_NT_HOSTBASED_SERVICE, GSS_NT_KRB5_PRINCIPAL};
use zookeeper_client::SaslOptions;

use super::private::check_private;

/// The service name ZooKeeper servers use by default (`zookeeper/HOST@REALM`).
pub const DEFAULT_SERVICE: &str = "zookeeper";

/// Kerberos settings of a mount, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KerberosFiles {
    /// The client principal (`sasl_kerberos_principal=NAME`); with a keytab, the one of
    /// its keys to use (default: its first); without, the ticket cache must be its.
    pub principal: Option<String>,
    /// The keytab (`sasl_kerberos_keytab=FILE`); `None`: the ticket cache.
    pub keytab: Option<PathBuf>,
    /// The service part of the servers' principal (`sasl_kerberos_service=NAME`; Java's
    /// `zookeeper.sasl.client.username`).
    pub service: String,
    /// The host part of the servers' principal (`sasl_kerberos_host=HOST`); `None`: the
    /// host of each server in the connection string.
    pub host: Option<String>,
}

/// A mount's checked Kerberos identity.
#[derive(Debug)]
pub struct Kerberos {
    files: KerberosFiles,
    /// The principal the credentials are of, as the library names it.
    principal: String,
    /// The servers' principal checked at mount time (`zookeeper/HOST`).
    service: String,
}

impl Kerberos {
    /// Checks the keytab, makes the process's default credential the one `files` asks
    /// for, and gets a ticket for the service on `first_host` (the first server of the
    /// connection string).
    ///
    /// Must run before any other thread: it sets environment variables.
    ///
    /// # Notable errors
    /// A keytab others may read or that cannot be read; a principal the keytab has no
    /// key of, that the KDC does not know, or whose key is not the KDC's; no ticket in
    /// the cache, or of another principal; a service principal the KDC does not know.
    /// Each message names the option concerned and what to do.
    pub fn load(files: &KerberosFiles, first_host: &str) -> Result<Kerberos, String> {
        let source = match &files.keytab {
            Some(keytab) => {
                check_private(keytab, "sasl_kerberos_keytab")?;
                let keytab = std::fs::canonicalize(keytab)
                    .map_err(|e| format!("sasl_kerberos_keytab {}: {e}", keytab.display()))?;
                let bytes =
                    std::fs::read(&keytab).map_err(|e| format!("sasl_kerberos_keytab {}: {e}", keytab.display()))?;
                // MIT's keytab files begin with format version 5.
                if bytes.first() != Some(&5) {
                    return Err(format!(
                        "sasl_kerberos_keytab {}: not a keytab (make one with kadmin's ktadd or ktutil)",
                        keytab.display()
                    ));
                }
                // No other thread runs yet (main calls this before the fork and the
                // runtime), so none reads the environment while it changes.
                std::env::set_var("KRB5_CLIENT_KTNAME", format!("FILE:{}", keytab.display()));
                std::env::set_var("KRB5CCNAME", format!("MEMORY:zkfs-{}", std::process::id()));
                format!("keytab {}", keytab.display())
            }
            None => match std::env::var("KRB5CCNAME") {
                Ok(cache) => format!("ticket cache {cache} (KRB5CCNAME)"),
                Err(_) => "default ticket cache".to_string(),
            },
        };
        let principal = acquire(files, &source, first_host).map_err(|e| format!("Kerberos: {e}"))?;
        let service = format!("{}/{}", files.service, files.host.as_deref().unwrap_or(first_host));
        Ok(Kerberos { files: files.clone(), principal, service })
    }

    /// The client principal, for the log and `zkfs status`.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// The servers' principal the mount checked at mount time: `SERVICE/HOST` of the
    /// first server (each server has its own unless `sasl_kerberos_host` is given).
    pub fn service_principal(&self) -> &str {
        &self.service
    }

    /// zookeeper-client's options: GSSAPI to the configured service.
    pub fn sasl_options(&self) -> SaslOptions {
        let mut options = SaslOptions::gssapi().with_username(self.files.service.clone());
        if let Some(host) = &self.files.host {
            options = options.with_hostname(host.clone());
        }
        options.into()
    }
}

/// Gets the credential and a service ticket with it; returns the principal.
fn acquire(files: &KerberosFiles, source: &str, first_host: &str) -> Result<String, String> {
    let host = files.host.as_deref().unwrap_or(first_host);
    let fail = |e: libgssapi::error::Error| explain(&e.to_string(), files, source, host);
    let mut krb5 = OidSet::new().map_err(fail)?;
    krb5.add(&GSS_MECH_KRB5).map_err(fail)?;
    let wanted = match &files.principal {
        Some(p) => Some(
            Name::new(p.as_bytes(), Some(&GSS_NT_KRB5_PRINCIPAL))
                .map_err(|e| format!("sasl_kerberos_principal={p} is no principal name [{}]", e.to_string().trim()))?,
        ),
        None => None,
    };
    let cred = Cred::acquire(wanted.as_ref(), None, CredUsage::Initiate, Some(&krb5)).map_err(fail)?;
    let service = format!("{}@{host}", files.service);
    let target = Name::new(service.as_bytes(), Some(&GSS_NT_HOSTBASED_SERVICE))
        .map_err(|e| format!("{service} is no service name [{}]", e.to_string().trim()))?;
    // The first step gets the ticket-granting ticket (from the keytab) if need be, then
    // the service ticket: what the KDC says of either is said here.
    let mut ctx = ClientCtx::new(Some(cred), target, CtxFlags::GSS_C_MUTUAL_FLAG, Some(&GSS_MECH_KRB5));
    ctx.step(None, None).map_err(fail)?;
    // Only the default credential reaches zookeeper-client: it must be the one asked
    // for (a keytab's tickets are in the mount's own cache by now).
    let default = Cred::acquire(None, None, CredUsage::Initiate, Some(&krb5))
        .and_then(|c| c.name())
        .map(|n| n.to_string())
        .map_err(fail)?;
    if let Some(p) = &files.principal {
        if !same_principal(&default, p) {
            return Err(format!(
                "the {source} holds tickets of {default}, not of sasl_kerberos_principal={p} \
                 (kinit {p}, or point KRB5CCNAME at its cache)"
            ));
        }
    }
    Ok(default)
}

/// What a GSS-API error (MIT's text: the generic major status, then the Kerberos
/// reason in parentheses) means for the mount, with the reason in brackets.
fn explain(text: &str, files: &KerberosFiles, source: &str, host: &str) -> String {
    let text = text.trim();
    // The major status says only "No credentials were supplied..." or "Unspecified
    // GSS failure": the reason is the minor status.
    let reason = text.split_once(" (").map_or(text, |(_, minor)| minor.strip_suffix(')').unwrap_or(minor));
    let has = |w: &str| reason.contains(w);
    let who = files.principal.as_deref().unwrap_or(match files.keytab {
        Some(_) => "the keytab's first principal",
        None => "the ticket cache's principal",
    });
    let renew = match &files.keytab {
        Some(keytab) => format!("make a new keytab: kadmin ktadd -k {} PRINCIPAL", keytab.display()),
        None => "run kinit, or give sasl_kerberos_keytab=FILE".into(),
    };
    let what = if has("Server") && has("not found") {
        format!(
            "the KDC knows no service principal {}/{host} (the servers' principal is SERVICE/HOST: give \
             sasl_kerberos_service=SERVICE or sasl_kerberos_host=HOST)",
            files.service
        )
    } else if has("Client") && has("not found") {
        format!("the KDC does not know {who}")
    } else if has("in cache collection") || has("No Kerberos credentials available") || has("No key table entry") {
        match (&files.principal, &files.keytab) {
            (Some(p), Some(k)) => format!("the keytab {} has no key of {p} (klist -k lists its keys)", k.display()),
            (None, Some(k)) => format!("the keytab {} has no key", k.display()),
            (Some(p), None) => format!("no tickets of {p} in the {source}: {renew}"),
            (None, None) => format!("no tickets in the {source}: {renew}"),
        }
    } else if has("Decrypt integrity check failed") || has("Preauthentication failed") || has("Key version") {
        format!("the KDC refused the key of {who} in the {source}; was the key changed since? {renew}")
    } else if has("expired") {
        let of = files.principal.as_deref().map_or(String::new(), |p| format!(" of {p}"));
        format!("the tickets{of} in the {source} have expired: {renew}")
    } else if has("Cannot contact any KDC") || has("Cannot find KDC") || has("Cannot resolve") {
        "no KDC of the realm answers (the realm's kdc in krb5.conf: /etc/krb5.conf, or KRB5_CONFIG)".into()
    } else if has("Clock skew") {
        "this host's clock differs from the KDC's by too much (sync the clocks)".into()
    } else {
        format!("cannot authenticate as {who} with the {source}")
    };
    format!("{what} [{reason}]")
}

/// True if `a` is `b`, with or without `b`'s realm (`alice` is `alice@REALM`).
fn same_principal(a: &str, b: &str) -> bool {
    a == b || (!b.contains('@') && a.split_once('@').is_some_and(|(name, _)| name == b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_without_realm_is_the_default_realms() {
        assert!(same_principal("alice@EXAMPLE.COM", "alice"));
        assert!(same_principal("alice@EXAMPLE.COM", "alice@EXAMPLE.COM"));
        assert!(!same_principal("alice@EXAMPLE.COM", "alice@OTHER.COM"));
        assert!(!same_principal("bob@EXAMPLE.COM", "alice"));
    }

    #[test]
    fn kerberos_errors_are_explained() {
        let files = KerberosFiles {
            principal: Some("alice".into()),
            keytab: Some("/k".into()),
            service: DEFAULT_SERVICE.into(),
            host: None,
        };
        let e = explain(
            "Unspecified GSS failure.  Minor code may provide more information (Server zookeeper/zk1@EX.COM \
             not found in Kerberos database)",
            &files,
            "keytab /k",
            "zk1",
        );
        assert!(e.starts_with("the KDC knows no service principal zookeeper/zk1 "), "{e}");
        assert!(e.ends_with("[Server zookeeper/zk1@EX.COM not found in Kerberos database]"), "{e}");
        let e = explain("No credentials were supplied (Decrypt integrity check failed)", &files, "keytab /k", "h");
        assert!(e.contains("refused the key of alice in the keytab /k"), "{e}");
        let cache = KerberosFiles { keytab: None, principal: None, ..files };
        let e = explain("No credentials (Ticket expired)", &cache, "default ticket cache", "h");
        assert!(e.contains("have expired: run kinit"), "{e}");
    }
}
