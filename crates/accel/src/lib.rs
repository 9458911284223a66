//! The accelerator model and the executor (docs/ARCHITECTURE.md "Accelerator model"): the
//! bus between host and accelerator, the local memory device (LMD) with its reconstruction
//! buffer, and the matrix unit (MMU); the real multiply from a stream, and the same
//! schedule against modelled clocks.
//!
//! - [`buffer`]: the LMD's reconstruction buffer (capacity, schedule-aware Belady or LRU
//!   eviction, pinning, bytes held and their peak), the one buffer type: the scheduler
//!   decides with it and the executor holds tiles in it;
//! - [`schedule`]: the scheduler, one [`schedule::Plan`] of rebuilds, evictions and gates
//!   that the executor and the timing model both follow;
//! - [`mmu`]: the matrix unit computing for real (AVX-512 kernels on stored fast-profile
//!   tiles, faer on rebuilt ones, a scalar reference);
//! - [`exec`]: the executor: tiles from a stream (`sparsewire-stream`), rebuilt
//!   (`sparsewire-re`), multiplied by the MMU, fused or pipelined;
//! - [`sim`]: the timing model (hardware descriptions, presets, an event pass over a plan);
//! - [`workload`]: a stream's multiplies as a trace with per-tile costs, for the model;
//! - [`calibrate`]: the `this-cpu` preset measured with the real code, and its check.
//!
//! `unsafe` lives in `mmu::avx512` only (and the chunk decoders it borrows from
//! `sparsewire-sparse`); the `portable` feature builds without it, and the crate then
//! forbids `unsafe` altogether.
#![cfg_attr(feature = "portable", forbid(unsafe_code))]
#![cfg_attr(not(feature = "portable"), deny(unsafe_code))]

pub mod buffer;
pub mod calibrate;
pub mod exec;
#[doc(hidden)]
pub mod fuzzing;
pub mod mmu;
pub mod schedule;
pub mod sim;
pub mod workload;
