//! Member selection policies (RFC 5356 and RSPLIB's private ones): the policy type codes
//! and the 18 policies with their per-PE value fields. Plain data; the codec encodes and
//! decodes the Policy TLV.

use std::fmt;

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

/// Policy type code (RFC 5356 §7.1 layout: bit 31 private, bit 30 adaptive).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct PolicyType(pub u32);

impl PolicyType {
    pub const ROUND_ROBIN: Self = Self(0x0000_0001);
    pub const WEIGHTED_ROUND_ROBIN: Self = Self(0x0000_0002);
    pub const RANDOM: Self = Self(0x0000_0003);
    pub const WEIGHTED_RANDOM: Self = Self(0x0000_0004);
    pub const PRIORITY: Self = Self(0x0000_0005);
    pub const LEAST_USED: Self = Self(0x4000_0001);
    pub const LEAST_USED_DEGRADATION: Self = Self(0x4000_0002);
    pub const PRIORITY_LEAST_USED: Self = Self(0x4000_0003);
    pub const RANDOMIZED_LEAST_USED: Self = Self(0x4000_0004);
    pub const RANDOMIZED_PRIORITY_LEAST_USED: Self = Self(0xB000_1001);
    pub const RANDOMIZED_LEAST_USED_DEGRADATION: Self = Self(0xB000_1002);
    pub const PRIORITY_LEAST_USED_DEGRADATION: Self = Self(0xB000_1003);
    pub const RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION: Self = Self(0xB000_1004);
    pub const WEIGHTED_RANDOM_DPF: Self = Self(0xB000_2001);
    pub const LEAST_USED_DPF: Self = Self(0xB000_2002);
    pub const LEAST_USED_DEGRADATION_DPF: Self = Self(0xB000_2003);
    pub const PRIORITY_LEAST_USED_DPF: Self = Self(0xB000_2004);
    pub const PRIORITY_LEAST_USED_DEGRADATION_DPF: Self = Self(0xB000_2005);
    /// LU-DPF code of draft-dreibholz-rserpool-delay-03 (Discrepancy #19); decoded as LU-DPF.
    pub const LEAST_USED_DPF_DRAFT: Self = Self(0x4000_0010);

    pub fn is_private(self) -> bool {
        self.0 & 0x8000_0000 != 0
    }
    pub fn is_adaptive(self) -> bool {
        self.0 & 0x4000_0000 != 0
    }
    /// Short name as used by RSPLIB tools and our CLI ("rr", "lu", "wrand-dpf" …).
    pub fn short_name(self) -> Option<&'static str> {
        POLICY_NAMES
            .iter()
            .find(|(t, _, _)| *t == self)
            .map(|(_, s, _)| *s)
    }
    pub fn long_name(self) -> Option<&'static str> {
        POLICY_NAMES
            .iter()
            .find(|(t, _, _)| *t == self)
            .map(|(_, _, l)| *l)
    }
    pub fn from_short_name(name: &str) -> Option<Self> {
        let name = name.to_ascii_lowercase().replace('_', "-");
        POLICY_NAMES
            .iter()
            .find(|(_, s, _)| *s == name)
            .map(|(t, _, _)| *t)
    }
    /// Every policy type this codec knows (9 RFC 5356 + 9 RSPLIB private).
    pub fn all() -> impl Iterator<Item = PolicyType> {
        POLICY_NAMES.iter().map(|(t, _, _)| *t)
    }
}

const POLICY_NAMES: &[(PolicyType, &str, &str)] = &[
    (PolicyType::ROUND_ROBIN, "rr", "Round Robin"),
    (
        PolicyType::WEIGHTED_ROUND_ROBIN,
        "wrr",
        "Weighted Round Robin",
    ),
    (PolicyType::RANDOM, "rand", "Random"),
    (PolicyType::WEIGHTED_RANDOM, "wrand", "Weighted Random"),
    (PolicyType::PRIORITY, "prio", "Priority"),
    (PolicyType::LEAST_USED, "lu", "Least Used"),
    (
        PolicyType::LEAST_USED_DEGRADATION,
        "lud",
        "Least Used with Degradation",
    ),
    (
        PolicyType::PRIORITY_LEAST_USED,
        "plu",
        "Priority Least Used",
    ),
    (
        PolicyType::RANDOMIZED_LEAST_USED,
        "rlu",
        "Randomized Least Used",
    ),
    (
        PolicyType::RANDOMIZED_PRIORITY_LEAST_USED,
        "rplu",
        "Randomized Priority Least Used",
    ),
    (
        PolicyType::RANDOMIZED_LEAST_USED_DEGRADATION,
        "rlud",
        "Randomized Least Used with Degradation",
    ),
    (
        PolicyType::PRIORITY_LEAST_USED_DEGRADATION,
        "plud",
        "Priority Least Used with Degradation",
    ),
    (
        PolicyType::RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION,
        "rplud",
        "Randomized Priority Least Used with Degradation",
    ),
    (
        PolicyType::WEIGHTED_RANDOM_DPF,
        "wrand-dpf",
        "Weighted Random with Distance Penalty Factor",
    ),
    (
        PolicyType::LEAST_USED_DPF,
        "lu-dpf",
        "Least Used with Distance Penalty Factor",
    ),
    (
        PolicyType::LEAST_USED_DEGRADATION_DPF,
        "lud-dpf",
        "Least Used with Degradation and Distance Penalty Factor",
    ),
    (
        PolicyType::PRIORITY_LEAST_USED_DPF,
        "plu-dpf",
        "Priority Least Used with Distance Penalty Factor",
    ),
    (
        PolicyType::PRIORITY_LEAST_USED_DEGRADATION_DPF,
        "plud-dpf",
        "Priority Least Used with Degradation and Distance Penalty Factor",
    ),
];

impl fmt::Display for PolicyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.short_name() {
            Some(s) => f.write_str(s),
            None => write!(f, "{:#010x}", self.0),
        }
    }
}
impl fmt::Debug for PolicyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PolicyType({self})")
    }
}

/// A member selection policy with its per-PE values (RFC 5356, RSPLIB private policies).
///
/// Loads and degradations: 0 = 0 %, 0xFFFFFFFF = 100 %. DPF values are fractions scaled
/// to 0xFFFFFFFF = 1.0 per ms of distance. Distance in ms.
///
/// PLU-DPF and PLUD-DPF have no encoding in RSPLIB; we encode them like LUD-DPF
/// (load, degradation, load DPF, distance, 24 bytes) and say so in docs/interop.md.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Policy {
    RoundRobin,
    WeightedRoundRobin {
        weight: u32,
    },
    Random,
    WeightedRandom {
        weight: u32,
    },
    Priority {
        priority: u32,
    },
    LeastUsed {
        load: u32,
    },
    LeastUsedDegradation {
        load: u32,
        degradation: u32,
    },
    PriorityLeastUsed {
        load: u32,
        degradation: u32,
    },
    RandomizedLeastUsed {
        load: u32,
    },
    RandomizedPriorityLeastUsed {
        load: u32,
        degradation: u32,
    },
    RandomizedLeastUsedDegradation {
        load: u32,
        degradation: u32,
    },
    PriorityLeastUsedDegradation {
        load: u32,
        degradation: u32,
    },
    RandomizedPriorityLeastUsedDegradation {
        load: u32,
        degradation: u32,
    },
    WeightedRandomDpf {
        weight: u32,
        weight_dpf: u32,
        distance: u32,
    },
    LeastUsedDpf {
        load: u32,
        load_dpf: u32,
        distance: u32,
    },
    LeastUsedDegradationDpf {
        load: u32,
        degradation: u32,
        load_dpf: u32,
        distance: u32,
    },
    PriorityLeastUsedDpf {
        load: u32,
        degradation: u32,
        load_dpf: u32,
        distance: u32,
    },
    PriorityLeastUsedDegradationDpf {
        load: u32,
        degradation: u32,
        load_dpf: u32,
        distance: u32,
    },
    /// A policy type this codec does not know: its value bytes after the type word.
    Unknown {
        policy_type: PolicyType,
        data: Vec<u8>,
    },
}

impl Policy {
    pub fn policy_type(&self) -> PolicyType {
        use Policy::*;
        match self {
            RoundRobin => PolicyType::ROUND_ROBIN,
            WeightedRoundRobin { .. } => PolicyType::WEIGHTED_ROUND_ROBIN,
            Random => PolicyType::RANDOM,
            WeightedRandom { .. } => PolicyType::WEIGHTED_RANDOM,
            Priority { .. } => PolicyType::PRIORITY,
            LeastUsed { .. } => PolicyType::LEAST_USED,
            LeastUsedDegradation { .. } => PolicyType::LEAST_USED_DEGRADATION,
            PriorityLeastUsed { .. } => PolicyType::PRIORITY_LEAST_USED,
            RandomizedLeastUsed { .. } => PolicyType::RANDOMIZED_LEAST_USED,
            RandomizedPriorityLeastUsed { .. } => PolicyType::RANDOMIZED_PRIORITY_LEAST_USED,
            RandomizedLeastUsedDegradation { .. } => PolicyType::RANDOMIZED_LEAST_USED_DEGRADATION,
            PriorityLeastUsedDegradation { .. } => PolicyType::PRIORITY_LEAST_USED_DEGRADATION,
            RandomizedPriorityLeastUsedDegradation { .. } => {
                PolicyType::RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION
            }
            WeightedRandomDpf { .. } => PolicyType::WEIGHTED_RANDOM_DPF,
            LeastUsedDpf { .. } => PolicyType::LEAST_USED_DPF,
            LeastUsedDegradationDpf { .. } => PolicyType::LEAST_USED_DEGRADATION_DPF,
            PriorityLeastUsedDpf { .. } => PolicyType::PRIORITY_LEAST_USED_DPF,
            PriorityLeastUsedDegradationDpf { .. } => {
                PolicyType::PRIORITY_LEAST_USED_DEGRADATION_DPF
            }
            Unknown { policy_type, .. } => *policy_type,
        }
    }

    /// The value words after the type word, in wire order.
    pub fn values(&self) -> PolicyValues {
        use Policy::*;
        let mut v = PolicyValues::default();
        match *self {
            RoundRobin | Random | Unknown { .. } => {}
            WeightedRoundRobin { weight } | WeightedRandom { weight } => v.push(weight),
            Priority { priority } => v.push(priority),
            LeastUsed { load } | RandomizedLeastUsed { load } => v.push(load),
            LeastUsedDegradation { load, degradation }
            | PriorityLeastUsed { load, degradation }
            | RandomizedPriorityLeastUsed { load, degradation }
            | RandomizedLeastUsedDegradation { load, degradation }
            | PriorityLeastUsedDegradation { load, degradation }
            | RandomizedPriorityLeastUsedDegradation { load, degradation } => {
                v.push(load);
                v.push(degradation);
            }
            WeightedRandomDpf {
                weight,
                weight_dpf,
                distance,
            } => {
                v.push(weight);
                v.push(weight_dpf);
                v.push(distance);
            }
            LeastUsedDpf {
                load,
                load_dpf,
                distance,
            } => {
                v.push(load);
                v.push(load_dpf);
                v.push(distance);
            }
            LeastUsedDegradationDpf {
                load,
                degradation,
                load_dpf,
                distance,
            }
            | PriorityLeastUsedDpf {
                load,
                degradation,
                load_dpf,
                distance,
            }
            | PriorityLeastUsedDegradationDpf {
                load,
                degradation,
                load_dpf,
                distance,
            } => {
                v.push(load);
                v.push(degradation);
                v.push(load_dpf);
                v.push(distance);
            }
        }
        v
    }

    /// Number of u32 value fields a known policy type carries after its type word.
    pub fn field_count(ty: PolicyType) -> Option<usize> {
        Some(match ty {
            PolicyType::ROUND_ROBIN | PolicyType::RANDOM => 0,
            PolicyType::WEIGHTED_ROUND_ROBIN
            | PolicyType::WEIGHTED_RANDOM
            | PolicyType::PRIORITY
            | PolicyType::LEAST_USED
            | PolicyType::RANDOMIZED_LEAST_USED => 1,
            PolicyType::LEAST_USED_DEGRADATION
            | PolicyType::PRIORITY_LEAST_USED
            | PolicyType::RANDOMIZED_PRIORITY_LEAST_USED
            | PolicyType::RANDOMIZED_LEAST_USED_DEGRADATION
            | PolicyType::PRIORITY_LEAST_USED_DEGRADATION
            | PolicyType::RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION => 2,
            PolicyType::WEIGHTED_RANDOM_DPF
            | PolicyType::LEAST_USED_DPF
            | PolicyType::LEAST_USED_DPF_DRAFT => 3,
            PolicyType::LEAST_USED_DEGRADATION_DPF
            | PolicyType::PRIORITY_LEAST_USED_DPF
            | PolicyType::PRIORITY_LEAST_USED_DEGRADATION_DPF => 4,
            _ => return None,
        })
    }

    /// Build a known policy from its type and value words (`None` for an unknown type or
    /// too few values; extra values are ignored).
    #[inline]
    pub fn from_values(ty: PolicyType, v: &[u32]) -> Option<Policy> {
        use Policy::*;
        let n = Self::field_count(ty)?;
        if v.len() < n {
            return None;
        }
        Some(match ty {
            PolicyType::ROUND_ROBIN => RoundRobin,
            PolicyType::RANDOM => Random,
            PolicyType::WEIGHTED_ROUND_ROBIN => WeightedRoundRobin { weight: v[0] },
            PolicyType::WEIGHTED_RANDOM => WeightedRandom { weight: v[0] },
            PolicyType::PRIORITY => Priority { priority: v[0] },
            PolicyType::LEAST_USED => LeastUsed { load: v[0] },
            PolicyType::RANDOMIZED_LEAST_USED => RandomizedLeastUsed { load: v[0] },
            PolicyType::LEAST_USED_DEGRADATION => LeastUsedDegradation {
                load: v[0],
                degradation: v[1],
            },
            PolicyType::PRIORITY_LEAST_USED => PriorityLeastUsed {
                load: v[0],
                degradation: v[1],
            },
            PolicyType::RANDOMIZED_PRIORITY_LEAST_USED => RandomizedPriorityLeastUsed {
                load: v[0],
                degradation: v[1],
            },
            PolicyType::RANDOMIZED_LEAST_USED_DEGRADATION => RandomizedLeastUsedDegradation {
                load: v[0],
                degradation: v[1],
            },
            PolicyType::PRIORITY_LEAST_USED_DEGRADATION => PriorityLeastUsedDegradation {
                load: v[0],
                degradation: v[1],
            },
            PolicyType::RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION => {
                RandomizedPriorityLeastUsedDegradation {
                    load: v[0],
                    degradation: v[1],
                }
            }
            PolicyType::WEIGHTED_RANDOM_DPF => WeightedRandomDpf {
                weight: v[0],
                weight_dpf: v[1],
                distance: v[2],
            },
            PolicyType::LEAST_USED_DPF | PolicyType::LEAST_USED_DPF_DRAFT => LeastUsedDpf {
                load: v[0],
                load_dpf: v[1],
                distance: v[2],
            },
            PolicyType::LEAST_USED_DEGRADATION_DPF => LeastUsedDegradationDpf {
                load: v[0],
                degradation: v[1],
                load_dpf: v[2],
                distance: v[3],
            },
            PolicyType::PRIORITY_LEAST_USED_DPF => PriorityLeastUsedDpf {
                load: v[0],
                degradation: v[1],
                load_dpf: v[2],
                distance: v[3],
            },
            PolicyType::PRIORITY_LEAST_USED_DEGRADATION_DPF => PriorityLeastUsedDegradationDpf {
                load: v[0],
                degradation: v[1],
                load_dpf: v[2],
                distance: v[3],
            },
            _ => return None,
        })
    }

    /// Load value, for the policies that carry one.
    pub fn load(&self) -> Option<u32> {
        use Policy::*;
        match *self {
            LeastUsed { load }
            | RandomizedLeastUsed { load }
            | LeastUsedDegradation { load, .. }
            | PriorityLeastUsed { load, .. }
            | RandomizedPriorityLeastUsed { load, .. }
            | RandomizedLeastUsedDegradation { load, .. }
            | PriorityLeastUsedDegradation { load, .. }
            | RandomizedPriorityLeastUsedDegradation { load, .. }
            | LeastUsedDpf { load, .. }
            | LeastUsedDegradationDpf { load, .. }
            | PriorityLeastUsedDpf { load, .. }
            | PriorityLeastUsedDegradationDpf { load, .. } => Some(load),
            _ => None,
        }
    }

    /// Load degradation value, for the policies that carry one.
    pub fn degradation(&self) -> Option<u32> {
        use Policy::*;
        match *self {
            LeastUsedDegradation { degradation, .. }
            | PriorityLeastUsed { degradation, .. }
            | RandomizedPriorityLeastUsed { degradation, .. }
            | RandomizedLeastUsedDegradation { degradation, .. }
            | PriorityLeastUsedDegradation { degradation, .. }
            | RandomizedPriorityLeastUsedDegradation { degradation, .. }
            | LeastUsedDegradationDpf { degradation, .. }
            | PriorityLeastUsedDpf { degradation, .. }
            | PriorityLeastUsedDegradationDpf { degradation, .. } => Some(degradation),
            _ => None,
        }
    }

    /// Weight value, for the policies that carry one.
    pub fn weight(&self) -> Option<u32> {
        match *self {
            Policy::WeightedRoundRobin { weight }
            | Policy::WeightedRandom { weight }
            | Policy::WeightedRandomDpf { weight, .. } => Some(weight),
            _ => None,
        }
    }

    /// Replace the load value (policies with a load field); returns false otherwise.
    pub fn set_load(&mut self, new: u32) -> bool {
        use Policy::*;
        match self {
            LeastUsed { load }
            | RandomizedLeastUsed { load }
            | LeastUsedDegradation { load, .. }
            | PriorityLeastUsed { load, .. }
            | RandomizedPriorityLeastUsed { load, .. }
            | RandomizedLeastUsedDegradation { load, .. }
            | PriorityLeastUsedDegradation { load, .. }
            | RandomizedPriorityLeastUsedDegradation { load, .. }
            | LeastUsedDpf { load, .. }
            | LeastUsedDegradationDpf { load, .. }
            | PriorityLeastUsedDpf { load, .. }
            | PriorityLeastUsedDegradationDpf { load, .. } => {
                *load = new;
                true
            }
            _ => false,
        }
    }
}

/// Up to four policy value words, without allocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyValues {
    len: u8,
    v: [u32; 4],
}

impl PolicyValues {
    fn push(&mut self, x: u32) {
        self.v[usize::from(self.len)] = x;
        self.len += 1;
    }
    pub fn as_slice(&self) -> &[u32] {
        &self.v[..usize::from(self.len)]
    }
}
