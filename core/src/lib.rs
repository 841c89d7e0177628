//! What the extension and the control plane share, without PostgreSQL.
//!
//! This crate holds the pure parts of `lifecycle`: the product's error codes
//! with their SQLSTATEs and HTTP statuses ([`codes`]), job types, statuses
//! and the state machine ([`jobs`]), the names of the audit events
//! ([`events`]), erase actions and column rules ([`rules`]), the order of
//! deletions ([`order`]), the hashes of the audit chain ([`audit`]) and
//! the identifiers of a subject inside free text ([`redact`]). It
//! depends on neither pgrx nor tokio, so everything here is tested with plain
//! `#[test]`s; the extension and the control plane call it instead of
//! keeping copies.

use std::fmt;

/// A text that is none of the names of an enum of this crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// What was being read, in words ("job status").
    pub kind: &'static str,
    /// The text that was given.
    pub value: String,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} \"{}\"", self.kind, self.value)
    }
}

impl std::error::Error for UnknownName {}

/// An enum whose values are stored and passed around as fixed lower-case
/// names: `as_str`, `FromStr` (exact names only), `Display` and `ALL`, in
/// the order given.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($kind:literal) {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in the documented order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name stored in the database and used in the SQL and HTTP APIs.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err($crate::UnknownName {
                        kind: $kind,
                        value: s.to_string(),
                    }),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod audit;
pub mod codes;
pub mod events;
pub mod export;
pub mod jobs;
pub mod order;
pub mod plan;
pub mod redact;
pub mod rules;

pub use codes::Code;

#[cfg(test)]
pub(crate) mod test_support {
    use std::fmt::Debug;
    use std::str::FromStr;

    /// The contract of an enum made by `named_enum!`: names are
    /// distinct, lower-case snake case and read back to the same value;
    /// other spellings are refused.
    pub fn check_names<T>(all: &[T], as_str: fn(T) -> &'static str, expected: &[&str])
    where
        T: Copy + PartialEq + Debug + FromStr<Err = crate::UnknownName>,
    {
        let names: Vec<&str> = all.iter().map(|v| as_str(*v)).collect();
        assert_eq!(names, expected);
        for v in all {
            let name = as_str(*v);
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
            assert_eq!(name.parse::<T>(), Ok(*v));
            assert!(name.to_uppercase().parse::<T>().is_err(), "{name}");
            assert!(format!(" {name}").parse::<T>().is_err(), "{name}");
        }
        let err = "nonsense".parse::<T>().unwrap_err();
        assert_eq!(err.value, "nonsense");
        assert!(err.to_string().contains("\"nonsense\""), "{err}");
    }
}
