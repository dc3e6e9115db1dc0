//! Handing a model's freed memory back to the operating system.

/// The last field of a loaded model, so it is dropped after the weights: glibc keeps
/// freed blocks for reuse (fragmented between smaller live ones, so a whole unloaded
/// model can stay resident), and is asked here to return its free pages, as users expect
/// memory to fall when a model is unloaded or swapped for another.
#[derive(Debug, Default)]
pub(crate) struct ReleaseFreedMemory;

impl Drop for ReleaseFreedMemory {
    fn drop(&mut self) {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: `malloc_trim` only walks the allocator's own free lists and may be called
        // from any thread at any time.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
