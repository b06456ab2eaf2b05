//! Names of checkpoint archive members and what each one is for: `ckpt_format::members`,
//! re-exported so the archive reader's callers keep their paths.

pub use ckpt_format::members::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_images_are_those_the_criu_reader_decodes() {
        for name in [
            "inventory.img",
            "pstree.img",
            "files.img",
            "stats-dump",
            "stats-restore",
            "fdinfo-2.img",
            "pagemap-1.img",
            "core-7.img",
            "ids-7.img",
            "mm-7.img",
            "fs-7.img",
            "mountpoints-13.img",
            "tcp-stream-1a2b.img",
            "tcp-listen.img",
            "pages-1.img",
            "ghost-file-3.img",
            "pstree-1.img",
            "inventory-x.img",
            "seccomp.img",
            "core.img",
        ] {
            assert_eq!(
                is_metadata_image(name),
                crate::criu::ImageSet::wants(name),
                "{name}"
            );
        }
    }
}
