//! A `.zip` the user imports (Settings -> Import): the store's `import_archive` reads the
//! manifest, the conversations and the images it names, into a real store on disk.
#![no_main]

use impchat_store::Store;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let archive = dir.path().join("import.zip");
    if std::fs::write(&archive, data).is_err() {
        return;
    }
    // A fresh store per input, so that any failure reproduces from its input alone.
    let Ok((store, _)) = Store::open(&dir.path().join("data")) else {
        return;
    };
    if store.import_archive(&archive).is_err() {
        return;
    }
    // What an import wrote must leave the database consistent.
    if let Err(problems) = store.integrity_check() {
        panic!("import left the store inconsistent: {problems:?}");
    }
});
