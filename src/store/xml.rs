//! XML bodies of ListObjectsV2 and of error responses, as serde types for quick-xml.
//!
//! One set of types serves both sides: the client deserializes them, `ossmount serve`
//! serializes them, so the two cannot drift apart. Field names follow the OSS/S3 wire
//! format exactly. Values stay as sent (URL-encoded when `EncodingType` is `url`);
//! decoding is the caller's job because it depends on `EncodingType`.

use serde::{Deserialize, Serialize};

/// `<ListBucketResult>` of ListObjectsV2 (OSS and S3 share it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename = "ListBucketResult")]
pub struct ListBucketResult {
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "Prefix", default)]
    pub prefix: String,
    #[serde(rename = "MaxKeys", default)]
    pub max_keys: u32,
    #[serde(rename = "Delimiter", default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    #[serde(
        rename = "EncodingType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub encoding_type: Option<String>,
    #[serde(rename = "IsTruncated", default)]
    pub is_truncated: bool,
    #[serde(
        rename = "ContinuationToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub continuation_token: Option<String>,
    #[serde(
        rename = "NextContinuationToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub next_continuation_token: Option<String>,
    #[serde(rename = "KeyCount", default)]
    pub key_count: u32,
    #[serde(rename = "Contents", default)]
    pub contents: Vec<Contents>,
    #[serde(rename = "CommonPrefixes", default)]
    pub common_prefixes: Vec<CommonPrefix>,
}

/// One `<Contents>` element: an object in a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contents {
    #[serde(rename = "Key")]
    pub key: String,
    /// ISO-8601 UTC with milliseconds, e.g. `2020-05-18T05:45:47.000Z`.
    #[serde(rename = "LastModified", default)]
    pub last_modified: String,
    #[serde(rename = "ETag", default)]
    pub etag: String,
    #[serde(rename = "Type", default, skip_serializing_if = "Option::is_none")]
    pub object_type: Option<String>,
    #[serde(rename = "Size", default)]
    pub size: u64,
    #[serde(
        rename = "StorageClass",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub storage_class: Option<String>,
    /// Archive objects: `ongoing-request="false", expiry-date="..."` (OSS ListObjectsV2).
    #[serde(
        rename = "RestoreInfo",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub restore_info: Option<String>,
}

/// One `<CommonPrefixes>` element.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommonPrefix {
    #[serde(rename = "Prefix")]
    pub prefix: String,
}

/// `<Error>` body of a failed request (and, base64-encoded, the `x-oss-err` header of a
/// failed HEAD).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename = "Error")]
pub struct ErrorBody {
    #[serde(rename = "Code", default)]
    pub code: String,
    #[serde(rename = "Message", default)]
    pub message: String,
    #[serde(rename = "RequestId", default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(rename = "HostId", default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    #[serde(rename = "EC", default, skip_serializing_if = "Option::is_none")]
    pub ec: Option<String>,
    /// Present in SignatureDoesNotMatch answers; the best debugging aid there is.
    #[serde(
        rename = "StringToSign",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub string_to_sign: Option<String>,
}

/// Serialize with the XML declaration the services send.
pub fn to_xml<T: Serialize>(value: &T) -> Result<String, quick_xml::SeError> {
    let body = quick_xml::se::to_string(value)?;
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}"
    ))
}

pub fn from_xml<'de, T: Deserialize<'de>>(text: &'de str) -> Result<T, quick_xml::DeError> {
    quick_xml::de::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_round_trip_and_oss_sample() {
        let sample = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult>
  <Name>examplebucket</Name>
  <Prefix>a%2F</Prefix>
  <MaxKeys>100</MaxKeys>
  <Delimiter>%2F</Delimiter>
  <EncodingType>url</EncodingType>
  <IsTruncated>true</IsTruncated>
  <NextContinuationToken>CgJiYw--</NextContinuationToken>
  <KeyCount>2</KeyCount>
  <Contents>
    <Key>a%2Fb</Key>
    <LastModified>2020-05-18T05:45:47.000Z</LastModified>
    <ETag>"35A27C2B9EAEEB6F48FD7FB5861D0000"</ETag>
    <Type>Normal</Type>
    <Size>25</Size>
    <StorageClass>Standard</StorageClass>
    <Owner><ID>1</ID><DisplayName>1</DisplayName></Owner>
  </Contents>
  <CommonPrefixes><Prefix>a%2Fb%2F</Prefix></CommonPrefixes>
</ListBucketResult>"#;
        let parsed: ListBucketResult = from_xml(sample).unwrap();
        assert_eq!(parsed.name, "examplebucket");
        assert!(parsed.is_truncated);
        assert_eq!(parsed.next_continuation_token.as_deref(), Some("CgJiYw--"));
        assert_eq!(parsed.contents.len(), 1);
        assert_eq!(parsed.contents[0].key, "a%2Fb");
        assert_eq!(parsed.contents[0].size, 25);
        assert_eq!(
            parsed.contents[0].etag,
            "\"35A27C2B9EAEEB6F48FD7FB5861D0000\""
        );
        assert_eq!(parsed.common_prefixes[0].prefix, "a%2Fb%2F");
        let again: ListBucketResult = from_xml(&to_xml(&parsed).unwrap()).unwrap();
        assert_eq!(again, parsed);
    }

    #[test]
    fn empty_listing_parses() {
        let parsed: ListBucketResult = from_xml(
            "<ListBucketResult><Name>b</Name><IsTruncated>false</IsTruncated></ListBucketResult>",
        )
        .unwrap();
        assert!(parsed.contents.is_empty() && parsed.common_prefixes.is_empty());
    }

    #[test]
    fn error_body_round_trip() {
        let e = ErrorBody {
            code: "NoSuchKey".into(),
            message: "The specified key does not exist.".into(),
            request_id: Some("57ABD896CCB80C366955".into()),
            ec: Some("0026-00000001".into()),
            ..Default::default()
        };
        let text = to_xml(&e).unwrap();
        assert!(text.contains("<Code>NoSuchKey</Code>"), "{text}");
        assert_eq!(from_xml::<ErrorBody>(&text).unwrap(), e);
    }
}
