//! Rendering an error for a person: what went wrong, each cause once, then advice.
//!
//! The convention every library error follows: a message says its own context and never
//! repeats its source (the chain carries the cause); pass-through wrappers are transparent;
//! advice ("pass --ca-file") is not part of a message but a separate hint, found here by
//! walking the chain.

use std::error::Error;

/// The error and its causes, `: `-separated, each once, in order.
pub fn chain(e: &(dyn Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        parts.push(c.to_string());
        cur = c.source();
    }
    parts.retain(|p| !p.is_empty());
    parts.join(": ")
}

/// Advice for the user from the first error in the chain that has some.
pub fn hint(e: &(dyn Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(h) = hint_of(c) {
            return Some(h);
        }
        cur = c.source();
    }
    None
}

fn hint_of(e: &(dyn Error + 'static)) -> Option<String> {
    if let Some(e) = e.downcast_ref::<crate::commands::CommandError>() {
        return e.hint();
    }
    if let Some(e) = e.downcast_ref::<crate::pack::PackError>() {
        return e.hint();
    }
    if let Some(e) = e.downcast_ref::<crate::registry::RegistryError>() {
        return e.hint();
    }
    if let Some(e) = e.downcast_ref::<crate::bundle::BundleError>() {
        return e.hint();
    }
    if let Some(e) = e.downcast_ref::<crate::load::LoadError>() {
        return e.hint();
    }
    if let Some(e) = e.downcast_ref::<crate::naming::NamingError>() {
        return e.hint();
    }
    if let Some(e) = e.downcast_ref::<crate::rewrite::K8sError>() {
        return e.hint();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::FileError;

    #[test]
    fn each_cause_once_and_the_hint_from_deep_in_the_chain() {
        let io = std::io::Error::from_raw_os_error(28);
        let e = FileError::new("writing", "/media/usb/b.tar.zst", io);
        assert_eq!(
            chain(&e),
            "writing /media/usb/b.tar.zst: No space left on device (os error 28)"
        );
        let n = crate::naming::NamingError::Collision {
            a: "a".into(),
            b: "b".into(),
            target: "t".into(),
        };
        let wrapped = crate::commands::CommandError::from(n);
        assert!(hint(&wrapped).unwrap().contains("--mode prefix"));
        assert_eq!(hint(&e), None);
    }
}
