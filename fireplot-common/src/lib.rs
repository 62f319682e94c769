//! Types shared by the kernel programs (`fireplot-ebpf`) and the userspace
//! loader (`fireplot`). Every type is `#[repr(C)]` with explicit padding so
//! that it is plain old data on both sides; the `user` feature adds
//! `aya::Pod` impls and conversions to std types.
#![no_std]

pub mod agg;
pub mod config;
pub mod counters;
pub mod event;
pub mod flood;
pub mod flow;
pub mod proto;
pub mod vector;

/// Size of one struct, checked at compile time against the layout the kernel
/// side and userspace both assume.
#[macro_export]
macro_rules! assert_size {
    ($t:ty, $n:expr) => {
        const _: () = assert!(core::mem::size_of::<$t>() == $n);
    };
}
