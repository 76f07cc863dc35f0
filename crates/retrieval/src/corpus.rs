//! A FlashRAG corpus (`.jsonl`, plain or `.zst`) with O(1) access to any row.
//!
//! Each line is one passage, `{"id": …, "contents": "title\ntext"}` or `{"id": …, "title": …,
//! "text": …}` (then `contents = title + "\n" + text`); other fields are ignored, and a numeric
//! `id` is read as its decimal text. Row `i` (0-based) is line `i + 1`; the index key of a passage
//! is its row number.
//!
//! One pass over the file writes an offset table (`corpus.offsets`: a 64-byte header, then one
//! little-endian `u64` per row plus the end) and an xxh3 checksum of the bytes; rows are then
//! sliced from a memory map. A `.zst` corpus is decompressed once to `corpus.jsonl` in the cache
//! folder (a memory map needs the plain bytes). The header records the source file's length and
//! modification time, so a later open reuses the table without reading the corpus again.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use research_agent::Passage;
use serde::Deserialize;

use crate::error::{format_err, io_err, Result, RetrievalError};

/// File name of the offset table in the cache folder.
pub const OFFSETS_FILE: &str = "corpus.offsets";
/// File name of a decompressed `.zst` corpus in the cache folder.
pub const PLAIN_CACHE_FILE: &str = "corpus.jsonl";

const MAGIC: &[u8; 8] = b"RSCORP01";
const HEADER_LEN: usize = 64;

/// Size and checksum of a corpus's plain bytes (the same for a file and its `.zst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CorpusStats {
    /// Rows (passages).
    pub rows: u64,
    /// Bytes of the plain jsonl.
    pub bytes: u64,
    /// xxh3-64 of the plain jsonl bytes.
    pub xxh3: u64,
}

/// A memory-mapped corpus with its offset table.
pub struct Corpus {
    source: PathBuf,
    plain: PathBuf,
    data: Option<Mmap>,
    offsets: Mmap,
    stats: CorpusStats,
}

impl std::fmt::Debug for Corpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Corpus")
            .field("source", &self.source)
            .field("plain", &self.plain)
            .field("stats", &self.stats)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    rows: u64,
    bytes: u64,
    xxh3: u64,
    source_len: u64,
    source_mtime_ns: u64,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(MAGIC);
        for (i, v) in [self.rows, self.bytes, self.xxh3, self.source_len, self.source_mtime_ns]
            .into_iter()
            .enumerate()
        {
            out[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
            return None;
        }
        let u = |i: usize| u64::from_le_bytes(bytes[8 + 8 * i..16 + 8 * i].try_into().unwrap());
        Some(Self {
            rows: u(0),
            bytes: u(1),
            xxh3: u(2),
            source_len: u(3),
            source_mtime_ns: u(4),
        })
    }
}

/// Length and modification time (ns since the epoch) of a file.
fn stamp(path: &Path) -> Result<(u64, u64)> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    Ok((meta.len(), mtime))
}

fn is_zst(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "zst")
}

fn map(path: &Path) -> Result<Option<Mmap>> {
    let file = File::open(path).map_err(io_err(path))?;
    if file.metadata().map_err(io_err(path))?.len() == 0 {
        return Ok(None);
    }
    // SAFETY: the files are read-only inputs of this process; as with every memory-mapped
    // reader, truncating them while mapped is the caller's fault.
    let m = unsafe { Mmap::map(&file) }.map_err(io_err(path))?;
    Ok(Some(m))
}

/// Writes `path` through a temporary file and a rename, so a reader never sees half a file.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let file = File::create(&tmp).map_err(io_err(&tmp))?;
    let mut w = BufWriter::new(file);
    write(&mut w).map_err(io_err(&tmp))?;
    let file = w.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
    file.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

impl Corpus {
    /// Opens a corpus, reusing or writing its offset table (and, for `.zst`, the decompressed
    /// copy) in `cache_dir`, which is created if needed.
    pub fn open(source: impl AsRef<Path>, cache_dir: impl AsRef<Path>) -> Result<Self> {
        let source = source.as_ref();
        let cache_dir = cache_dir.as_ref();
        std::fs::create_dir_all(cache_dir).map_err(io_err(cache_dir))?;
        let (source_len, source_mtime_ns) = stamp(source)?;
        let plain = if is_zst(source) {
            cache_dir.join(PLAIN_CACHE_FILE)
        } else {
            source.to_path_buf()
        };
        let offsets_path = cache_dir.join(OFFSETS_FILE);

        // Reuse a table written for this very source file.
        if let Some(corpus) = Self::reuse(source, &plain, &offsets_path, source_len, source_mtime_ns)? {
            return Ok(corpus);
        }
        if is_zst(source) {
            tracing::info!(source = %source.display(), cache = %plain.display(), "decompressing corpus");
            decompress(source, &plain)?;
        }
        let data = map(&plain)?;
        let bytes: &[u8] = data.as_deref().unwrap_or(&[]);
        let (offsets, xxh3) = scan(bytes, source)?;
        let header = Header {
            rows: offsets.len() as u64 - 1,
            bytes: bytes.len() as u64,
            xxh3,
            source_len,
            source_mtime_ns,
        };
        write_atomically(&offsets_path, |w| {
            w.write_all(&header.encode())?;
            for o in &offsets {
                w.write_all(&o.to_le_bytes())?;
            }
            Ok(())
        })?;
        tracing::info!(rows = header.rows, bytes = header.bytes, "corpus offsets written");
        let offsets = map(&offsets_path)?.ok_or_else(|| format_err(&offsets_path, "empty offset table"))?;
        Ok(Self {
            source: source.to_path_buf(),
            plain,
            data,
            offsets,
            stats: CorpusStats {
                rows: header.rows,
                bytes: header.bytes,
                xxh3: header.xxh3,
            },
        })
    }

    /// Opens a corpus only if `cache_dir` already holds an offset table written for this very
    /// source file (same length and modification time); `None` otherwise.
    pub fn open_cached(source: impl AsRef<Path>, cache_dir: impl AsRef<Path>) -> Result<Option<Self>> {
        let source = source.as_ref();
        let cache_dir = cache_dir.as_ref();
        let (source_len, source_mtime_ns) = stamp(source)?;
        let plain = if is_zst(source) {
            cache_dir.join(PLAIN_CACHE_FILE)
        } else {
            source.to_path_buf()
        };
        Self::reuse(
            source,
            &plain,
            &cache_dir.join(OFFSETS_FILE),
            source_len,
            source_mtime_ns,
        )
    }

    /// Opens a corpus for an index folder whose manifest expects `expected`: a different corpus
    /// is refused without touching the folder's cached files (it is scanned in a staging folder
    /// first). The error names the manifest, both corpora and their checksums.
    pub fn open_expecting(
        source: impl AsRef<Path>,
        dir: impl AsRef<Path>,
        expected: &crate::manifest::CorpusInfo,
        manifest_path: &Path,
    ) -> Result<Self> {
        let (source, dir) = (source.as_ref(), dir.as_ref());
        let check = |c: &Corpus| -> Result<()> {
            let got = crate::manifest::CorpusInfo::new(source, c.stats());
            if got.checksum == expected.checksum && got.rows == expected.rows {
                return Ok(());
            }
            Err(RetrievalError::Mismatch {
                path: manifest_path.to_path_buf(),
                message: format!(
                    "the index was built from corpus {} ({} rows, checksum {}), but {} has {} rows, checksum {}",
                    expected.path.display(),
                    expected.rows,
                    expected.checksum,
                    source.display(),
                    got.rows,
                    got.checksum
                ),
            })
        };
        if let Some(c) = Self::open_cached(source, dir)? {
            check(&c)?;
            return Ok(c);
        }
        let staging = dir.join("corpus-staging");
        let scanned = Self::open(source, &staging).and_then(|c| check(&c));
        if let Err(e) = scanned {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        for name in [OFFSETS_FILE, PLAIN_CACHE_FILE] {
            let from = staging.join(name);
            if from.exists() {
                let to = dir.join(name);
                std::fs::rename(&from, &to).map_err(io_err(&to))?;
            }
        }
        let _ = std::fs::remove_dir_all(&staging);
        Self::open(source, dir)
    }

    fn reuse(
        source: &Path,
        plain: &Path,
        offsets_path: &Path,
        source_len: u64,
        source_mtime_ns: u64,
    ) -> Result<Option<Self>> {
        if !offsets_path.exists() || !plain.exists() {
            return Ok(None);
        }
        let Some(offsets) = map(offsets_path)? else {
            return Ok(None);
        };
        let Some(h) = Header::decode(&offsets) else {
            return Ok(None);
        };
        let plain_len = std::fs::metadata(plain).map_err(io_err(plain))?.len();
        let table_len = HEADER_LEN as u64 + 8 * (h.rows + 1);
        if h.source_len != source_len
            || h.source_mtime_ns != source_mtime_ns
            || plain_len != h.bytes
            || offsets.len() as u64 != table_len
        {
            return Ok(None);
        }
        Ok(Some(Self {
            source: source.to_path_buf(),
            plain: plain.to_path_buf(),
            data: map(plain)?,
            offsets,
            stats: CorpusStats {
                rows: h.rows,
                bytes: h.bytes,
                xxh3: h.xxh3,
            },
        }))
    }

    /// The file as given (maybe `.zst`).
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The plain jsonl that is memory-mapped.
    pub fn plain_path(&self) -> &Path {
        &self.plain
    }

    /// Rows, bytes and checksum.
    pub fn stats(&self) -> CorpusStats {
        self.stats
    }

    /// Number of rows.
    pub fn len(&self) -> u64 {
        self.stats.rows
    }

    /// Whether the corpus has no rows.
    pub fn is_empty(&self) -> bool {
        self.stats.rows == 0
    }

    fn offset(&self, i: u64) -> usize {
        let at = HEADER_LEN + 8 * i as usize;
        u64::from_le_bytes(self.offsets[at..at + 8].try_into().unwrap()) as usize
    }

    /// The raw JSON text of row `row` (no line end).
    pub fn raw(&self, row: u64) -> Result<&[u8]> {
        if row >= self.stats.rows {
            return Err(RetrievalError::Input(format!(
                "{}: row {row} out of range (the corpus has {} rows)",
                self.source.display(),
                self.stats.rows
            )));
        }
        let data = self.data.as_deref().unwrap_or(&[]);
        let (start, end) = (self.offset(row), self.offset(row + 1));
        if end > data.len() || start > end {
            return Err(format_err(
                &self.plain,
                format!("offset table does not fit the file (row {row}: {start}..{end} of {} bytes); delete {OFFSETS_FILE} to rebuild it", data.len()),
            ));
        }
        let mut line = &data[start..end];
        while let [rest @ .., b'\n' | b'\r'] = line {
            line = rest;
        }
        Ok(line)
    }

    /// Row `row` as a passage; a malformed row is an error naming the file and line.
    pub fn row(&self, row: u64) -> Result<Passage> {
        parse_row(self.raw(row)?).map_err(|message| RetrievalError::Row {
            path: self.source.clone(),
            line: row + 1,
            message,
        })
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Id {
    Text(String),
    Number(serde_json::Number),
}

#[derive(Deserialize)]
struct RawRow {
    id: Option<Id>,
    contents: Option<String>,
    title: Option<String>,
    text: Option<String>,
}

const SCHEMA: &str = r#"expected {"id", "contents"} or {"id", "title", "text"}"#;

/// Parses one jsonl line into a passage.
pub fn parse_row(line: &[u8]) -> std::result::Result<Passage, String> {
    let raw: RawRow = serde_json::from_slice(line).map_err(|e| format!("not a JSON object ({e}); {SCHEMA}"))?;
    let id = match raw.id {
        Some(Id::Text(s)) => s,
        Some(Id::Number(n)) => n.to_string(),
        None => return Err(format!("missing field `id`; {SCHEMA}")),
    };
    let contents = match (raw.contents, raw.title, raw.text) {
        (Some(c), _, _) => c,
        (None, Some(title), Some(text)) => format!("{title}\n{text}"),
        (None, Some(_), None) => return Err(format!("field `title` without `text`; {SCHEMA}")),
        (None, None, Some(_)) => return Err(format!("field `text` without `title`; {SCHEMA}")),
        (None, None, None) => return Err(format!("missing field `contents`; {SCHEMA}")),
    };
    Ok(Passage { id, contents })
}

/// Row start offsets (plus the end) and the xxh3 of `bytes`. Empty lines are an error except at
/// the end of the file.
fn scan(bytes: &[u8], source: &Path) -> Result<(Vec<u64>, u64)> {
    let xxh3 = xxhash_rust::xxh3::xxh3_64(bytes);
    let mut offsets = Vec::with_capacity(bytes.len() / 512 + 2);
    let mut start = 0usize;
    let mut line = 0u64;
    let mut blank_at: Option<u64> = None;
    let mut push = |start: usize, end: usize, line: u64, offsets: &mut Vec<u64>| -> Result<()> {
        let text = &bytes[start..end];
        let blank = text.iter().all(|b| b.is_ascii_whitespace());
        if blank {
            blank_at.get_or_insert(line);
            return Ok(());
        }
        if let Some(b) = blank_at {
            return Err(RetrievalError::Row {
                path: source.to_path_buf(),
                line: b,
                message: "empty line (expected one JSON passage per line, row numbers are index keys)".into(),
            });
        }
        offsets.push(start as u64);
        Ok(())
    };
    for nl in memchr::memchr_iter(b'\n', bytes) {
        line += 1;
        push(start, nl, line, &mut offsets)?;
        start = nl + 1;
    }
    if start < bytes.len() {
        push(start, bytes.len(), line + 1, &mut offsets)?;
    }
    // The end of the last row: the start of the first trailing blank line, or the end of the file.
    let end = match offsets.last() {
        Some(&last) => {
            let from = last as usize;
            memchr::memchr(b'\n', &bytes[from..]).map_or(bytes.len(), |i| from + i + 1)
        }
        None => 0,
    };
    offsets.push(end as u64);
    Ok((offsets, xxh3))
}

/// Streams a `.zst` file into `out` (through a temporary file and a rename).
fn decompress(source: &Path, out: &Path) -> Result<()> {
    let file = File::open(source).map_err(io_err(source))?;
    let mut dec = ruzstd::decoding::StreamingDecoder::new(std::io::BufReader::new(file))
        .map_err(|e| format_err(source, format!("not a zstd stream: {e}")))?;
    let mut err = None;
    write_atomically(out, |w| {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match dec.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    err = Some(e.to_string());
                    return Err(std::io::Error::other("corrupt zstd stream"));
                }
            };
            if n == 0 {
                return Ok(());
            }
            w.write_all(&buf[..n])?;
        }
    })
    .map_err(|e| match err {
        Some(m) => format_err(source, format!("corrupt zstd stream: {m}")),
        None => e,
    })
}
