//! The size budget of a mirror's status: its size as the API server encodes it (Go's JSON, which
//! escapes more than serde_json), and what is cut when it does not fit, each list and each long text
//! with accessors of its own, so that a part cannot be counted without being cut.
//!
//! Its cost is bounded whatever the record: it works on a status whose texts are already cut to
//! 4 KiB and whose lists to 128 items, and each round of cutting removes at least a sixth of what is
//! over the budget.

use serde::Serialize;

use crate::api::instance::GpuInstanceStatus;
use ppio::text::floor_char_boundary;

/// A list of the status that may lose items from its end to fit the budget: its name in the
/// `Truncated` condition, the encoded size of each of its items, and how to keep its first `n`.
struct CuttableList {
    field: &'static str,
    sizes: fn(&GpuInstanceStatus) -> Vec<usize>,
    keep: fn(&mut GpuInstanceStatus, usize),
}

/// The lists that grow without end, each with its own accessors, so a list cannot be added here
/// without saying how it is cut.
const CUTTABLE_LISTS: [CuttableList; 4] = [
    CuttableList {
        field: "volumes",
        sizes: |status| item_sizes(&status.volumes),
        keep: |status, n| status.volumes.truncate(n),
    },
    CuttableList {
        field: "ports",
        sizes: |status| item_sizes(&status.ports),
        keep: |status, n| status.ports.truncate(n),
    },
    CuttableList {
        field: "envs",
        sizes: |status| item_sizes(&status.envs),
        keep: |status, n| status.envs.truncate(n),
    },
    CuttableList {
        field: "resourceSpecs.gpuIds",
        sizes: |status| {
            item_sizes(
                status
                    .resource_specs
                    .as_ref()
                    .map_or(&[][..], |r| &r.gpu_ids),
            )
        },
        keep: |status, n| {
            if let Some(specs) = status.resource_specs.as_mut() {
                specs.gpu_ids.truncate(n);
            }
        },
    },
];

/// A long text of the status that may be shortened from its end to fit the budget: its name in
/// the `Truncated` condition, and where it is.
struct CuttableText {
    field: &'static str,
    text: fn(&mut GpuInstanceStatus) -> Option<&mut String>,
}

/// The long texts, shortened largest first once the lists are cut.
const CUTTABLE_TEXTS: [CuttableText; 4] = [
    CuttableText {
        field: "command",
        text: |status| status.command.as_mut(),
    },
    CuttableText {
        field: "entrypoint",
        text: |status| status.entrypoint.as_mut(),
    },
    CuttableText {
        field: "image",
        text: |status| status.image.as_mut(),
    },
    CuttableText {
        field: "status.message",
        text: |status| status.status.as_mut().and_then(|s| s.message.as_mut()),
    },
];

/// Shrinks `status` until it takes at most `budget` bytes as the API server encodes it, and says what
/// was cut. Items go from the end of the largest list first (lists are what grows without end), then
/// long texts are shortened from their end, largest first; as a last resort they are left out.
pub(super) fn fit_to_budget(status: &mut GpuInstanceStatus, budget: usize) -> Vec<String> {
    let mut cuts = Vec::new();
    let size = encoded_len(status);
    if size <= budget {
        return cuts;
    }
    let mut over = size - budget;

    // The item sizes of each list; items leave from the end of the largest list.
    let mut sizes: Vec<Vec<usize>> = CUTTABLE_LISTS
        .iter()
        .map(|list| (list.sizes)(status))
        .collect();
    let full: Vec<usize> = sizes.iter().map(Vec::len).collect();
    while over > 0 {
        let Some(largest) = sizes
            .iter_mut()
            .filter(|sizes| !sizes.is_empty())
            .max_by_key(|sizes| sizes.iter().sum::<usize>())
        else {
            break;
        };
        let dropped = largest.pop().unwrap_or(0);
        over = over.saturating_sub(dropped);
    }
    for ((list, sizes), full) in CUTTABLE_LISTS.iter().zip(&sizes).zip(full) {
        let kept = sizes.len();
        if kept == full {
            continue;
        }
        cuts.push(format!("{} (kept {kept} of {full})", list.field));
        (list.keep)(status, kept);
    }

    // Then long texts, largest first.
    while encoded_len(status) > budget {
        let over = encoded_len(status) - budget;
        let Some(largest) = CUTTABLE_TEXTS
            .iter()
            .filter_map(|cut| {
                let size = (cut.text)(status)
                    .filter(|v| !v.is_empty())
                    .map(|v| encoded_len(v))?;
                Some((cut, size))
            })
            .max_by_key(|(_, size)| *size)
            .map(|(cut, _)| cut)
        else {
            break;
        };
        let Some(value) = (largest.text)(status) else {
            break;
        };
        let before = value.len();
        // An encoded byte is at most 6 in the text (a `\u003c`), at least 1: cut at least `over / 6`.
        let keep = before.saturating_sub(over.div_ceil(6).max(1));
        value.truncate(floor_char_boundary(value, keep));
        if !cuts.iter().any(|c| c.starts_with(largest.field)) {
            cuts.push(format!("{} (cut from {before} bytes)", largest.field));
        }
    }
    cuts
}

/// The encoded size of each item of a list, with its separating comma.
fn item_sizes<T: Serialize>(items: &[T]) -> Vec<usize> {
    items.iter().map(|item| encoded_len(item) + 1).collect()
}

/// Bytes `value` takes as JSON the way the API server writes it: Go escapes `<`, `>`, `&` and the
/// line and paragraph separators as `\uXXXX`, which serde_json does not.
pub(super) fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    let mut counter = EncodedLen(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

/// Counts the bytes of JSON written to it as Go would encode them, keeping none.
struct EncodedLen(usize);

impl std::io::Write for EncodedLen {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        // serde_json writes strings in runs cut at ASCII escapes, so a character is never split.
        let extra: usize = bytes
            .iter()
            .enumerate()
            .map(|(i, b)| match b {
                b'<' | b'>' | b'&' => 5,
                // U+2028 and U+2029 are E2 80 A8 and E2 80 A9.
                0xe2 if bytes.get(i + 1) == Some(&0x80)
                    && matches!(bytes.get(i + 2), Some(0xa8 | 0xa9)) =>
                {
                    3
                }
                _ => 0,
            })
            .sum();
        self.0 += bytes.len() + extra;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
