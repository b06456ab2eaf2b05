//! Reading foreign JSON (archives of other engines): a field of an unexpected type reads as
//! its default instead of failing the whole document.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// The field as `T`, or `T::default()` when it has another type.
pub fn or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    let v = serde_json::Value::deserialize(d)?;
    Ok(T::deserialize(v).unwrap_or_default())
}
