//! Typed names: job statuses and types come from the core crate's enums,
//! so the API reads and writes exactly the names the database stores, and
//! the OpenAPI document lists them, from one definition. An unknown name in
//! a query or a body is refused with the names there are.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::error::Error;
use std::str::FromStr;

use lifecycle_core::jobs::{JobStatus, JobType};
use lifecycle_core::UnknownName;
use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio_postgres::types::{FromSql, Type};
use utoipa::openapi::schema::{
    AdditionalProperties, ObjectBuilder, SchemaType, Type as SchemaKind,
};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

/// An enum whose values are fixed lower-case names.
pub trait NamedEnum: Copy + Eq + FromStr<Err = UnknownName> + 'static {
    /// Every value, in the documented order.
    const ALL: &'static [Self];
    /// The schema's name in the OpenAPI document.
    const SCHEMA_NAME: &'static str;
    /// The value's name.
    fn name(self) -> &'static str;

    /// The names, for messages.
    fn names() -> String {
        Self::ALL
            .iter()
            .map(|v| v.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl NamedEnum for JobStatus {
    const ALL: &'static [Self] = JobStatus::ALL;
    const SCHEMA_NAME: &'static str = "JobStatus";
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl NamedEnum for JobType {
    const ALL: &'static [Self] = JobType::ALL;
    const SCHEMA_NAME: &'static str = "JobType";
    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// The law whose deadline a request follows: GDPR (30 days) or CCPA (45
/// days). The extension keeps the deadlines; the API only names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Jurisdiction {
    Gdpr,
    Ccpa,
}

impl FromStr for Jurisdiction {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|j| j.name() == s)
            .ok_or_else(|| UnknownName {
                kind: "jurisdiction",
                value: s.to_owned(),
            })
    }
}

impl NamedEnum for Jurisdiction {
    const ALL: &'static [Self] = &[Jurisdiction::Gdpr, Jurisdiction::Ccpa];
    const SCHEMA_NAME: &'static str = "Jurisdiction";
    fn name(self) -> &'static str {
        match self {
            Jurisdiction::Gdpr => "gdpr",
            Jurisdiction::Ccpa => "ccpa",
        }
    }
}

/// The JSON schema of a [`NamedEnum`]: a string, one of its names.
fn enum_schema<T: NamedEnum>() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(SchemaKind::String))
        .enum_values(Some(T::ALL.iter().map(|v| v.name())))
        .into()
}

/// Parse a name, with the names there are in the error.
fn parse<T: NamedEnum>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|e| format!("{e}; expected one of: {}", T::names()))
}

/// A count for every value of a [`NamedEnum`], zeros included: a JSON
/// object with one property per name, in the enum's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counts<T: NamedEnum>(BTreeMap<&'static str, i64>, std::marker::PhantomData<T>);

impl<T: NamedEnum> Default for Counts<T> {
    fn default() -> Self {
        Self(
            T::ALL.iter().map(|v| (v.name(), 0)).collect(),
            std::marker::PhantomData,
        )
    }
}

impl<T: NamedEnum> Counts<T> {
    pub fn add(&mut self, value: T, n: i64) {
        *self.0.entry(value.name()).or_default() += n;
    }

    pub fn get(&self, value: T) -> i64 {
        self.0.get(value.name()).copied().unwrap_or_default()
    }
}

impl<T: NamedEnum> Serialize for Counts<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(T::ALL.len()))?;
        for value in T::ALL {
            map.serialize_entry(value.name(), &self.get(*value))?;
        }
        map.end()
    }
}

/// The JSON schema of [`Counts`]: every name a required integer property.
fn counts_schema<T: NamedEnum>() -> RefOr<Schema> {
    let mut object = ObjectBuilder::new()
        .schema_type(SchemaType::new(SchemaKind::Object))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for value in T::ALL {
        object = object
            .property(
                value.name(),
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(SchemaKind::Integer))
                    .minimum(Some(0)),
            )
            .required(value.name());
    }
    object.into()
}

/// An API type for a [`NamedEnum`] (its name as a JSON string, read from
/// a `text` column, listed in the OpenAPI document under the enum's name)
/// and one for its [`Counts`].
macro_rules! api_names {
    ($(#[$meta:meta])* $name:ident($inner:ty) as $schema:literal, $counts:ident as $counts_schema:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $name(pub $inner);

        impl $name {
            pub fn name(self) -> &'static str {
                self.0.name()
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.name())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                parse(&text).map($name).map_err(D::Error::custom)
            }
        }

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                enum_schema::<$inner>()
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($schema)
            }
        }

        /// Read from a `text` column; a name the API does not know is an
        /// error (the database's CHECK constraints make it impossible).
        impl<'a> FromSql<'a> for $name {
            fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
                let text = <&str as FromSql>::from_sql(ty, raw)?;
                Ok($name(parse(text)?))
            }

            fn accepts(ty: &Type) -> bool {
                <&str as FromSql>::accepts(ty)
            }
        }

        #[doc = concat!("A count for every ", $schema, ", zeros included.")]
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
        #[serde(transparent)]
        pub struct $counts(pub Counts<$inner>);

        impl PartialSchema for $counts {
            fn schema() -> RefOr<Schema> {
                counts_schema::<$inner>()
            }
        }

        impl ToSchema for $counts {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($counts_schema)
            }
        }
    };
}

api_names!(
    /// Where a job is in its state machine.
    StatusName(JobStatus) as "JobStatus",
    StatusCounts as "JobStatusCounts"
);
api_names!(
    /// What a job does to its target.
    TypeName(JobType) as "JobType",
    TypeCounts as "JobTypeCounts"
);
api_names!(
    /// Whose statutory deadline a request follows.
    JurisdictionName(Jurisdiction) as "Jurisdiction",
    JurisdictionCounts as "JurisdictionCounts"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_say_what_there_is() {
        for status in JobStatus::ALL {
            let json = serde_json::to_value(StatusName(*status)).unwrap();
            assert_eq!(json, status.as_str());
            let back: StatusName = serde_json::from_value(json).unwrap();
            assert_eq!(back.0, *status);
        }
        let err = serde_json::from_str::<TypeName>("\"delete\"").unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown job type \"delete\"; expected one of: export, erase, purge"),
            "{err}"
        );
        assert_eq!("ccpa".parse::<Jurisdiction>().unwrap(), Jurisdiction::Ccpa);
        assert!("GDPR".parse::<Jurisdiction>().is_err());
    }

    #[test]
    fn counts_name_every_value_with_zeros() {
        let mut counts = Counts::<JobStatus>::default();
        counts.add(JobStatus::Failed, 2);
        counts.add(JobStatus::Failed, 1);
        let json = serde_json::to_value(&counts).unwrap();
        assert_eq!(json.as_object().unwrap().len(), JobStatus::ALL.len());
        assert_eq!(json["failed"], 3);
        assert_eq!(json["pending"], 0);
    }
}
