//! Magic numbers of the CRIU image files this crate reads (CRIU 4.2 `criu/include/magic.h`;
//! numbers are facts of the format).

/// Head of every ordinary image (followed by the image's own magic).
pub const IMG_COMMON: u32 = 0x5456_4319;
/// Head of service files such as `stats-dump` (followed by the file's own magic).
pub const IMG_SERVICE: u32 = 0x5510_5940;

pub const INVENTORY: u32 = 0x5831_3116;
pub const PSTREE: u32 = 0x5027_3030;
pub const FDINFO: u32 = 0x5621_3732;
pub const PAGEMAP: u32 = 0x5608_4025;
pub const CORE: u32 = 0x5505_3847;
pub const IDS: u32 = 0x5443_2030;
pub const MM: u32 = 0x5749_2820;
pub const FS: u32 = 0x5140_3912;
pub const MNTS: u32 = 0x5556_3928;
pub const FILES: u32 = 0x5630_3138;
pub const TCP_STREAM: u32 = 0x5146_5506;
pub const STATS: u32 = 0x5709_3306;

/// How an image file starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// `inventory.img`: its magic alone.
    Bare(u32),
    /// `IMG_COMMON` then the image's magic.
    Common(u32),
    /// `IMG_SERVICE` then the file's magic.
    Service(u32),
}

impl Head {
    /// The head an image with this file name must have, if it is one we read.
    pub fn for_file(name: &str) -> Option<Head> {
        let base = name.rsplit('/').next().unwrap_or(name);
        let stem = base.strip_suffix(".img").unwrap_or(base);
        let kind = stem.split_once('-').map_or(stem, |(k, _)| k);
        Some(match (kind, stem) {
            (_, "inventory") => Head::Bare(INVENTORY),
            (_, "pstree") => Head::Common(PSTREE),
            (_, "files") => Head::Common(FILES),
            (_, "stats-dump") | (_, "stats-restore") => Head::Service(STATS),
            ("fdinfo", _) => Head::Common(FDINFO),
            ("pagemap", _) => Head::Common(PAGEMAP),
            ("core", _) => Head::Common(CORE),
            ("ids", _) => Head::Common(IDS),
            ("mm", _) => Head::Common(MM),
            ("fs", _) => Head::Common(FS),
            ("mountpoints", _) => Head::Common(MNTS),
            ("tcp", _) if stem.starts_with("tcp-stream-") => Head::Common(TCP_STREAM),
            _ => return None,
        })
    }

    /// Length of the head in bytes.
    pub fn size(self) -> u64 {
        match self {
            Head::Bare(_) => 4,
            Head::Common(_) | Head::Service(_) => 8,
        }
    }
}

/// A readable name for a magic number, for error messages.
pub fn name(magic: u32) -> &'static str {
    match magic {
        IMG_COMMON => "IMG_COMMON",
        IMG_SERVICE => "IMG_SERVICE",
        INVENTORY => "INVENTORY",
        PSTREE => "PSTREE",
        FDINFO => "FDINFO",
        PAGEMAP => "PAGEMAP",
        CORE => "CORE",
        IDS => "IDS",
        MM => "MM",
        FS => "FS",
        MNTS => "MNTS",
        FILES => "FILES",
        TCP_STREAM => "TCP_STREAM",
        STATS => "STATS",
        _ => "unknown",
    }
}
