//! Where the archive's bytes go: the ZIP writer (a blocking thread) writes
//! into a [`ChunkSink`], which hands fixed-size chunks over a bounded
//! channel to [`upload`], which hashes them and puts them into the
//! multipart upload. The channel's bound is what keeps memory flat: the
//! writer waits while the store is slower than it.

use std::io::{self, Write};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::storage::{StorageError, Upload};

/// Bytes handed over at once.
pub const CHUNK_SIZE: usize = 256 * 1024;
/// Chunks on their way to the upload at most.
pub const CHUNKS_IN_FLIGHT: usize = 4;

/// A `Write` that sends what it is given, in chunks, to the upload task.
pub struct ChunkSink {
    buffer: Vec<u8>,
    chunks: mpsc::Sender<Bytes>,
}

impl ChunkSink {
    pub fn new(chunks: mpsc::Sender<Bytes>) -> Self {
        Self {
            buffer: Vec::with_capacity(CHUNK_SIZE),
            chunks,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_SIZE));
        self.chunks
            .blocking_send(Bytes::from(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    /// Send what is left; the archive is complete.
    pub fn finish(mut self) -> io::Result<()> {
        self.send()
    }
}

impl Write for ChunkSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= CHUNK_SIZE {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunks leave when full or at the end; a flush mid-way would only
        // make smaller parts.
        Ok(())
    }
}

/// Put every chunk into `upload` until the writer is done (its sender
/// dropped); returns the SHA-256 of all of it.
pub async fn upload(
    mut chunks: mpsc::Receiver<Bytes>,
    upload: &mut Upload,
) -> Result<[u8; 32], StorageError> {
    let mut hash = Sha256::new();
    while let Some(chunk) = chunks.recv().await {
        hash.update(&chunk);
        upload.write(chunk).await?;
    }
    Ok(hash.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_full_except_the_last() {
        let (tx, mut rx) = mpsc::channel(100);
        let mut sink = ChunkSink::new(tx);
        sink.write_all(&vec![1u8; CHUNK_SIZE - 1]).unwrap();
        sink.flush().unwrap();
        assert!(rx.try_recv().is_err());
        sink.write_all(&[2u8; 10]).unwrap();
        sink.finish().unwrap();
        let sizes: Vec<usize> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|c| c.len())
            .collect();
        assert_eq!(sizes, [CHUNK_SIZE + 9]);
    }

    #[test]
    fn a_stopped_upload_is_a_broken_pipe() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut sink = ChunkSink::new(tx);
        let err = sink.write_all(&vec![0u8; CHUNK_SIZE]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
