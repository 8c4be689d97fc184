//! The home tier of a real paged-expert decode: every expert of a model, packed in one format,
//! in one file, each at a 4 KiB-aligned offset so that it can be read with direct I/O.
//!
//! Layout: a 4096-byte text header (`moesim-experts 1 format=... layers=... experts=... hidden=...
//! ffn=... seed=... expert_bytes=... stride=...`, padded with spaces and ending in a newline),
//! then expert `g = layer · experts + i` at `4096 + g · stride`, its packed `W1`, `W3`, `W2` rows
//! back to back (`stride` is the packed size rounded up to 4096).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, InputError, Result};
use crate::quality::proxy::{QuantExpert, WeightSource};
use crate::quant::WeightFormat;

/// Alignment of direct I/O offsets, lengths and buffers.
pub const ALIGN: usize = 4096;

/// What a store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreShape {
    /// Weight format of every expert.
    pub format: WeightFormat,
    /// MoE layers.
    pub layers: u32,
    /// Experts per layer.
    pub experts: u32,
    /// Hidden width.
    pub hidden: usize,
    /// FFN width.
    pub ffn: usize,
    /// Seed of the synthetic weights.
    pub seed: u64,
}

impl StoreShape {
    /// Bytes of one packed expert.
    pub fn expert_bytes(&self) -> u64 {
        self.format.bytes_for((3 * self.hidden * self.ffn) as u64)
    }

    /// Distance between experts in the file.
    pub fn stride(&self) -> u64 {
        self.expert_bytes().div_ceil(ALIGN as u64) * ALIGN as u64
    }

    fn header(&self) -> String {
        let mut h = format!(
            "moesim-experts 1 format={} layers={} experts={} hidden={} ffn={} seed={} expert_bytes={} stride={}",
            self.format,
            self.layers,
            self.experts,
            self.hidden,
            self.ffn,
            self.seed,
            self.expert_bytes(),
            self.stride()
        );
        while h.len() < ALIGN - 1 {
            h.push(' ');
        }
        h.push('\n');
        h
    }
}

/// A buffer whose address is aligned for direct I/O.
pub struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// The buffer owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes (a multiple of [`ALIGN`]), its pages touched here: a
    /// large zeroed allocation is mapped lazily, and the first read into each page would
    /// otherwise take its page faults inside a timed read (the decode's first reads go into
    /// fresh buffers, the calibration's into a reused pool). On the development VM this did
    /// not close the gap it was meant for: a fully cached Q2_K point's reads still ran 10-30 %
    /// slower than a 4-expert cache's. Where the read lands was the cause (freshly allocated
    /// buffers read up to a quarter faster or slower by allocation), so `host validate`'s
    /// decodes read into the buffers the calibration measured (BENCHMARKS.md).
    pub fn new(len: usize) -> AlignedBuf {
        assert!(len > 0 && len.is_multiple_of(ALIGN));
        let layout = std::alloc::Layout::from_size_align(len, ALIGN).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr =
            std::ptr::NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        for offset in (0..len).step_by(ALIGN) {
            // SAFETY: `offset < len`, inside the allocation; a volatile write of the zero it
            // holds, so that it is not optimised away.
            unsafe { std::ptr::write_volatile(ptr.as_ptr().add(offset), 0) };
        }
        AlignedBuf { ptr, len }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `len` initialised (zeroed or read) bytes we own.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(self.len, ALIGN).expect("valid layout");
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) }
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

/// `O_DIRECT` on Linux, by architecture.
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "x86")))]
const O_DIRECT: i32 = 0o040000;
#[cfg(all(target_os = "linux", any(target_arch = "aarch64", target_arch = "arm")))]
const O_DIRECT: i32 = 0o200000;
#[cfg(not(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm"
    )
)))]
const O_DIRECT: i32 = 0;

/// An open store.
#[derive(Debug)]
pub struct ExpertStore {
    file: File,
    path: PathBuf,
    /// Its shape.
    pub shape: StoreShape,
    /// Whether reads bypass the page cache (`O_DIRECT`).
    pub direct: bool,
}

impl ExpertStore {
    /// The largest direct read the store's block device serves as one request, from its queue
    /// limits in sysfs: `max_sectors_kb`, and `max_segments` pages (a buffer of 4 KiB pages
    /// not physically contiguous is a segment per page; on the development VM 254 of them, so
    /// a 1.77 MB Q4_K expert was two requests and a 1.03 MB Q2_K one one). `None` through the
    /// page cache (readahead decides the requests), or when the device's limits cannot be read.
    pub fn request_bytes(&self) -> Option<u64> {
        if !self.direct {
            return None;
        }
        use std::os::unix::fs::MetadataExt;
        let dev = self.file.metadata().ok()?.dev();
        // Linux's encoding of a device number.
        let (major, minor) = (
            ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
            (dev & 0xff) | ((dev >> 12) & !0xff),
        );
        let base = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
        // A partition's limits are its disk's.
        let queue = [base.join("queue"), base.join("../queue")]
            .into_iter()
            .find(|q| q.is_dir())?;
        let read = |name: &str| -> Option<u64> {
            std::fs::read_to_string(queue.join(name))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        let sectors = read("max_sectors_kb")? * 1024;
        let segments = read("max_segments")? * ALIGN as u64;
        Some(sectors.min(segments)).filter(|&b| b > 0)
    }

    /// Writes every expert of `source` (`layers × experts`) in `shape.format` to `path`,
    /// atomically.
    pub fn create(path: &Path, source: &dyn WeightSource, shape: StoreShape) -> Result<()> {
        if source.hidden() != shape.hidden || source.ffn() != shape.ffn {
            return Err(Error::usage(
                "the weight source's shape differs from the store's",
            ));
        }
        let mut out = crate::atomic_file::AtomicFile::create(path)?;
        let w = out.writer();
        let io = |e| Error::io(path, e);
        w.write_all(shape.header().as_bytes()).map_err(io)?;
        let pad = vec![0u8; (shape.stride() - shape.expert_bytes()) as usize];
        for layer in 0..shape.layers {
            for x in 0..shape.experts {
                let weights = source.expert(layer, x).map_err(Error::usage)?;
                let q = QuantExpert::new(&weights, shape.format).map_err(Error::usage)?;
                w.write_all(&q.packed()).map_err(io)?;
                w.write_all(&pad).map_err(io)?;
            }
        }
        out.commit()
    }

    /// Opens `path`; with `direct`, for direct I/O when the filesystem allows it (see
    /// [`ExpertStore::direct`]).
    pub fn open(path: &Path, direct: bool) -> Result<ExpertStore> {
        use std::io::Read;
        let bad = |r: String| Error::Input(InputError::new(path.display().to_string(), r));
        let mut header = vec![0u8; ALIGN];
        File::open(path)
            .and_then(|mut f| f.read_exact(&mut header))
            .map_err(|e| bad(format!("not an expert store: {e}")))?;
        let text = String::from_utf8_lossy(&header);
        let mut fields = text.split_whitespace();
        if fields.next() != Some("moesim-experts") || fields.next() != Some("1") {
            return Err(bad(
                "not an expert store (no `moesim-experts 1` header)".into()
            ));
        }
        let kv: std::collections::HashMap<&str, &str> =
            fields.filter_map(|f| f.split_once('=')).collect();
        let get = |k: &str| {
            kv.get(k)
                .copied()
                .ok_or_else(|| bad(format!("header lacks `{k}`")))
        };
        let num = |k: &str| -> Result<u64> {
            get(k)?
                .parse()
                .map_err(|_| bad(format!("header `{k}` is not a number")))
        };
        let shape = StoreShape {
            format: get("format")?
                .parse()
                .map_err(|e: String| bad(format!("header `format`: {e}")))?,
            layers: num("layers")? as u32,
            experts: num("experts")? as u32,
            hidden: num("hidden")? as usize,
            ffn: num("ffn")? as usize,
            seed: num("seed")?,
        };
        // Sizes from an untrusted header: refuse what does not fit the arithmetic.
        if shape.layers.checked_mul(shape.experts).is_none()
            || shape
                .hidden
                .checked_mul(shape.ffn)
                .and_then(|x| x.checked_mul(3))
                .is_none()
        {
            return Err(bad("header sizes are out of range".into()));
        }
        if num("expert_bytes")? != shape.expert_bytes() || num("stride")? != shape.stride() {
            return Err(bad("header sizes disagree with its shape".into()));
        }
        let want = (shape.layers as u64 * shape.experts as u64)
            .checked_mul(shape.stride())
            .and_then(|x| x.checked_add(ALIGN as u64))
            .ok_or_else(|| bad("header sizes are out of range".into()))?;
        let len = std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .len();
        if len != want {
            return Err(bad(format!(
                "{len} bytes, expected {want}: truncated or not a store"
            )));
        }
        let open = |flags: i32| {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(flags)
                .open(path)
        };
        let (file, direct) = match (direct && O_DIRECT != 0).then(|| open(O_DIRECT)) {
            Some(Ok(f)) => (f, true),
            _ => (open(0).map_err(|e| Error::io(path, e))?, false),
        };
        let mut store = ExpertStore {
            file,
            path: path.to_path_buf(),
            shape,
            direct,
        };
        // Some filesystems accept O_DIRECT at open and refuse the read: fall back.
        if store.direct {
            let mut probe = AlignedBuf::new(ALIGN);
            if store.read_at(0, &mut probe).is_err() {
                store.file = open(0).map_err(|e| Error::io(path, e))?;
                store.direct = false;
            }
        }
        Ok(store)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_at(&self, offset: u64, buf: &mut AlignedBuf) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.read_exact_at(buf.as_mut_slice(), offset)
    }

    /// Reads expert `g` (`layer · experts + i`) into `buf` (at least one stride long); the
    /// packed expert is `buf[..expert_bytes]`.
    pub fn read_expert(&self, g: u32, buf: &mut AlignedBuf) -> Result<()> {
        let stride = self.shape.stride() as usize;
        assert!(buf.len >= stride);
        use std::os::unix::fs::FileExt;
        let offset = ALIGN as u64 + g as u64 * stride as u64;
        self.file
            .read_exact_at(&mut buf.as_mut_slice()[..stride], offset)
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Reads `len` bytes (a multiple of [`ALIGN`]) at `offset` (aligned) into `buf`.
    pub fn read_raw(&self, offset: u64, buf: &mut AlignedBuf) -> Result<()> {
        self.read_at(offset, buf)
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Bytes of the file.
    pub fn len_bytes(&self) -> u64 {
        ALIGN as u64 + self.shape.stride() * (self.shape.layers * self.shape.experts) as u64
    }
}
