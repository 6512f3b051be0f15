//! Shards: the label selector that picks one shard's views, and the Lease each shard elects its
//! leader on.

use super::apply::FIELD_MANAGER;

/// The Lease a replica set competes for: one per shard, so every shard has a leader of its own.
pub fn default_lease_name(shard_selector: Option<&str>) -> String {
    match shard_selector {
        None => FIELD_MANAGER.to_owned(),
        Some(selector) => {
            let digest = ppio_gpu_core::mirror::kubernetes_label_value(&format!("{selector}!"));
            let hash = digest.rsplit('-').next().unwrap_or_default();
            format!("{FIELD_MANAGER}-shard-{hash}")
        }
    }
}

/// Checks that a shard selector constrains only [`ppio_gpu_core::mirror::SHARD_LABEL`]: `key`, `!key`,
/// `key=v`, `key!=v`, `key in (...)`, `key notin (...)`, comma-separated.
pub fn check_shard_selector(selector: &str) -> Result<(), String> {
    let key = ppio_gpu_core::mirror::SHARD_LABEL;
    let mut depth = 0usize;
    let mut requirements = vec![String::new()];
    for c in selector.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                requirements.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = requirements.last_mut() {
            last.push(c);
        }
    }
    for requirement in &requirements {
        let requirement = requirement.trim();
        let rest = requirement
            .strip_prefix('!')
            .unwrap_or(requirement)
            .trim_start();
        let Some(after) = rest.strip_prefix(key) else {
            return Err(format!(
                "{requirement:?} does not constrain {key}: shard views by that label only, which \
                 their mirrors carry too (e.g. \"{key} in (shard1)\" or \"!{key}\")"
            ));
        };
        let after = after.trim_start();
        let operator_ok = after.is_empty()
            || after.starts_with('=')
            || after.starts_with("!=")
            || after.starts_with("in ")
            || after.starts_with("in(")
            || after.starts_with("notin");
        if requirement.is_empty() || !operator_ok {
            return Err(format!(
                "{requirement:?} is not a label selector requirement on {key}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_selectors_may_constrain_only_the_shard_label() {
        for good in [
            "sharding.ppio.io/key in (shard1)",
            "sharding.ppio.io/key in (shard1, shard2)",
            "!sharding.ppio.io/key",
            "sharding.ppio.io/key=shard1",
            "sharding.ppio.io/key notin (shard1,shard2)",
        ] {
            assert_eq!(check_shard_selector(good), Ok(()), "{good}");
        }
        for bad in [
            "team=ml",
            "sharding.ppio.io/key in (a),team=ml",
            "",
            "sharding.ppio.io/keyx=a",
        ] {
            assert!(check_shard_selector(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_shard_gets_a_lease_of_its_own() {
        assert_eq!(default_lease_name(None), "ppio-gpu-operator");
        let one = default_lease_name(Some("sharding.ppio.io/key in (shard1)"));
        let two = default_lease_name(Some("sharding.ppio.io/key in (shard2)"));
        assert!(one.starts_with("ppio-gpu-operator-shard-"), "{one}");
        assert_ne!(one, two);
        assert_eq!(
            one,
            default_lease_name(Some("sharding.ppio.io/key in (shard1)"))
        );
    }
}
