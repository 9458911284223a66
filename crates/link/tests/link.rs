//! The link end to end on loopback: outputs equal the in-process multiply, malformed
//! frames and lying hosts are errors that never reach the multiply, a restarted host is
//! reconnected to, and the controller follows the link.

use sparsewire_accel::exec;
use sparsewire_formats::{Dtype, Tensor, TensorFile};
use sparsewire_link::client::{Client, ClientOptions};
use sparsewire_link::frame::{Frame, Kind, TileRequest};
use sparsewire_link::host::{HostModel, HostOptions};
use sparsewire_link::pace::{Pacer, Trace};
use sparsewire_link::run::{run, Policy, RunOptions};
use sparsewire_link::server::Server;
use sparsewire_link::LinkError;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = (i as u32 ^ seed).wrapping_mul(2654435761) >> 8;
            (h % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// Two f32 matrices (one spanning several tiles), a bf16 one, a bias.
fn model() -> TensorFile {
    let bf: Vec<u8> = values(96 * 80, 3)
        .iter()
        .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
        .collect();
    TensorFile {
        tensors: vec![
            Tensor::from_f32("l0.weight", vec![600, 256], &values(600 * 256, 1)),
            Tensor::from_f32("l0.bias", vec![600], &values(600, 2)),
            Tensor::new("l1.weight", Dtype::BF16, vec![96, 80], bf).unwrap(),
            Tensor::from_f32("l2.weight", vec![64, 600], &values(64 * 600, 4)),
        ],
        metadata: vec![],
    }
}

fn host(trace: Option<Trace>) -> (Arc<HostModel>, sparsewire_link::server::Handle) {
    let m = Arc::new(HostModel::new(&model(), &HostOptions::default()).unwrap());
    let s = spawn(m.clone(), trace);
    (m, s)
}

/// Serves `m` on a loopback port of its own.
fn spawn(m: Arc<HostModel>, trace: Option<Trace>) -> sparsewire_link::server::Handle {
    Server::bind("127.0.0.1:0".parse().unwrap(), false, m, Pacer::new(trace))
        .unwrap()
        .spawn()
}

fn opts(policy: Policy, passes: u32) -> RunOptions {
    RunOptions {
        policy,
        passes: Some(passes),
        reference: Some(model()),
        ..RunOptions::default()
    }
}

/// `W x` in process, from the host's own payloads at `level` for every tile.
fn in_process(m: &HostModel, name: &str, level: u16, x: &[f32]) -> Vec<f32> {
    let t = m.manifest.tensor_index(name).unwrap();
    let mut y = vec![];
    for k in 0..m.manifest.tensors[t].tiles {
        let p = m.payload(t as u32, k, level).unwrap();
        let r = sparsewire_stream::Reader::new(&p[..]).unwrap();
        let o = exec::Options {
            threads: 1,
            ..exec::Options::default()
        };
        y.extend(exec::matmul(&r, 0, x, &o).unwrap().0);
    }
    y
}

#[test]
fn outputs_equal_the_in_process_multiply() {
    let (m, server) = host(None);
    let mut c = Client::connect(server.addr(), ClientOptions::default()).unwrap();
    let r = run(&mut c, &opts(Policy::Lossless, 2), &mut |_| {}).unwrap();
    assert_eq!(r.layers, ["l0.weight", "l1.weight", "l2.weight"]);
    assert_eq!(r.passes, 2);
    // Lossless: the whole tensor compressed in one stream multiplies to the same bits.
    for (i, name) in r.layers.iter().enumerate() {
        let t = model()
            .tensors
            .into_iter()
            .find(|t| &t.name == name)
            .unwrap();
        let f = TensorFile {
            tensors: vec![t],
            metadata: vec![],
        };
        let s = sparsewire_stream::encode(&f, &Default::default()).unwrap();
        let reader = sparsewire_stream::Reader::new(&s[..]).unwrap();
        let o = exec::Options {
            threads: 1,
            ..exec::Options::default()
        };
        let y = exec::matmul(&reader, 0, &r.inputs[i], &o).unwrap().0;
        assert_eq!(r.outputs[i], y, "{name}");
    }
    assert!(r.mean_cosine.unwrap() > 0.999_999, "{:?}", r.mean_cosine);
    assert_eq!(r.mean_rel_error, 0.0);
    assert!(r.levels.iter().flatten().all(|&l| l == 0.0));
    // A fixed level: what the host sends at that level, multiplied here.
    let r = run(&mut c, &opts(Policy::Fixed(0.5), 1), &mut |_| {}).unwrap();
    for (i, name) in r.layers.iter().enumerate() {
        assert_eq!(
            r.outputs[i],
            in_process(&m, name, 2, &r.inputs[i]),
            "{name}"
        );
    }
    assert!(r.levels.iter().flatten().all(|&l| l == 0.5));
    let cos = r.mean_cosine.unwrap();
    assert!((0.8..0.999).contains(&cos), "{cos}");
    assert!(
        r.bytes_sent < r.dense_bytes / 2,
        "{} {}",
        r.bytes_sent,
        r.dense_bytes
    );
    assert_eq!((r.retries, r.reconnects), (0, 0));
    // A level the host does not have, adaptive without a deadline, an unknown tensor.
    for (p, sched, want) in [
        (Policy::Fixed(0.6), vec![], "not one of the host's levels"),
        (Policy::Lossless, vec!["nope".to_string()], "no tensor"),
        (
            Policy::Lossless,
            vec!["l0.bias".to_string()],
            "not a float matrix",
        ),
    ] {
        let o = RunOptions {
            schedule: sched,
            ..opts(p, 1)
        };
        let e = run(&mut c, &o, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
    }
}

#[test]
fn garbage_closes_that_connection_only_and_bad_requests_are_answered() {
    let (_, server) = host(None);
    let mut good = Client::connect(server.addr(), ClientOptions::default()).unwrap();
    for junk in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0u8; 64][..],
        &Frame::new(Kind::Tile, 1, vec![1; 8]).to_bytes()[..],
    ] {
        let mut s = TcpStream::connect(server.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(junk).unwrap();
        let mut buf = vec![];
        let _ = s.read_to_end(&mut buf); // the host closes it
    }
    // An oversize length prefix is refused before anything is allocated.
    let mut s = TcpStream::connect(server.addr()).unwrap();
    let mut f = Frame::new(Kind::Hello, 0, vec![1, 0]).to_bytes();
    f[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    s.write_all(&f).unwrap();
    let _ = s.read_to_end(&mut vec![]);
    assert_eq!(
        server
            .stats()
            .bad_frames
            .load(std::sync::atomic::Ordering::Relaxed),
        4
    );
    // The good client is still served; an out-of-range tile is the host's typed answer.
    good.send(TileRequest {
        tensor: 0,
        tile: 0,
        level: 0,
    })
    .unwrap();
    assert!(good.receive().is_ok());
    good.send(TileRequest {
        tensor: 0,
        tile: 999,
        level: 0,
    })
    .unwrap();
    let e = good.receive().unwrap_err();
    assert!(e.to_string().contains("no tile 999"), "{e}");
    good.reconnect().unwrap(); // the bad request is sent again, and refused again
    assert!(good
        .receive()
        .unwrap_err()
        .to_string()
        .contains("no tile 999"));
}

/// A proxy between client and host that damages one tile frame of the first connection,
/// in the way `damage` says.
fn lying_proxy(
    upstream: sparsewire_link::transport::Endpoint,
    damage: fn(&mut Vec<u8>),
) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for (n, conn) in l.incoming().enumerate() {
            let Ok(mut down) = conn else { return };
            let mut up = TcpStream::connect(&upstream).unwrap();
            let (mut d2, mut u2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut d2, &mut u2);
            });
            std::thread::spawn(move || {
                let mut frames = 0;
                loop {
                    let Ok(f) = Frame::read_from(&mut up, u32::MAX) else {
                        return;
                    };
                    let mut b = f.to_bytes();
                    frames += 1;
                    if n == 0 && frames == 3 {
                        damage(&mut b);
                        let _ = down.write_all(&b);
                        return; // and hang up
                    }
                    if down.write_all(&b).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_lying_host_never_reaches_the_multiply() {
    let (_, server) = host(None);
    let want = {
        let mut c = Client::connect(server.addr(), ClientOptions::default()).unwrap();
        run(&mut c, &opts(Policy::Lossless, 1), &mut |_| {})
            .unwrap()
            .outputs
    };
    let damages: [fn(&mut Vec<u8>); 4] = [
        |b| {
            let i = b.len() / 2;
            b[i] ^= 0x40; // a flipped payload byte: the frame checksum
        },
        |b| b.truncate(b.len() - 20), // a truncated frame
        |b| b[12..16].copy_from_slice(&u32::MAX.to_le_bytes()), // an oversize length
        |b| {
            // Another tile's stream with a valid frame checksum.
            let f = Frame::parse(b, u32::MAX).unwrap().0;
            let mut p = f.payload;
            let i = p.len() / 2;
            p[i] ^= 1; // damage inside the stream, so the stream's own checksum fails
            *b = Frame::new(f.kind, f.id, p).to_bytes();
        },
    ];
    for damage in damages {
        let proxy = lying_proxy(server.addr(), damage);
        let mut c = Client::connect(
            proxy,
            ClientOptions {
                timeout: Duration::from_secs(2),
                ..Default::default()
            },
        )
        .unwrap();
        let r = run(&mut c, &opts(Policy::Lossless, 1), &mut |_| {}).unwrap();
        assert_eq!(r.outputs, want);
        assert!(
            r.retries >= 1 && r.reconnects >= 1,
            "{} {}",
            r.retries,
            r.reconnects
        );
    }
}

#[test]
fn a_restarted_host_is_reconnected_to() {
    let m = Arc::new(HostModel::new(&model(), &HostOptions::default()).unwrap());
    let server = spawn(m.clone(), None);
    let addr = server.addr();
    let mut c = Client::connect(
        &addr,
        ClientOptions {
            timeout: Duration::from_secs(2),
            ..Default::default()
        },
    )
    .unwrap();
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        server.stop();
        std::thread::sleep(Duration::from_millis(200));
        Server::bind_endpoint(&addr, false, m, Pacer::new(None))
            .unwrap()
            .spawn()
    });
    let o = RunOptions {
        period: Some(Duration::from_millis(50)),
        ..opts(Policy::Lossless, 12)
    };
    let r = run(&mut c, &o, &mut |_| {}).unwrap();
    let _again = restarter.join().unwrap();
    assert_eq!(r.passes, 12);
    assert!(r.reconnects >= 1, "{}", r.reconnects);
    assert!(r.mean_cosine.unwrap() > 0.999_999);
}

#[test]
fn adaptive_follows_the_link() {
    // 181 kB a pass lossless; 100 ms a pass.
    let period = Some(Duration::from_millis(100));
    let fast = {
        let (_, s) = host(Some(Trace::constant(2.0).unwrap()));
        let mut c = Client::connect(s.addr(), ClientOptions::default()).unwrap();
        let o = RunOptions {
            period,
            ..opts(Policy::Adaptive { max: None }, 8)
        };
        run(&mut c, &o, &mut |_| {}).unwrap()
    };
    assert!(fast.deadline_hit_fraction.unwrap() >= 0.99, "{fast:?}");
    let mean = |r: &sparsewire_link::run::RunReport| {
        r.levels[2..].iter().flatten().sum::<f32>() / r.levels[2..].iter().flatten().count() as f32
    };
    assert!(mean(&fast) <= 0.1, "{:?}", fast.levels);
    // 1.5 MB/s: 150 kB a pass; lossless (181 kB) cannot make it, the sparser levels can.
    let slow = {
        let (_, s) = host(Some(Trace::constant(0.0015).unwrap()));
        let mut c = Client::connect(s.addr(), ClientOptions::default()).unwrap();
        let o = RunOptions {
            period,
            ..opts(Policy::Adaptive { max: None }, 10)
        };
        run(&mut c, &o, &mut |_| {}).unwrap()
    };
    assert!(mean(&slow) >= 0.5, "{:?}", slow.pass_reports);
    assert!(
        slow.deadline_hit_fraction.unwrap() >= 0.7,
        "{:?}",
        slow.deadline_hit_fraction
    );
    let lossless_slow = {
        let (_, s) = host(Some(Trace::constant(0.0015).unwrap()));
        let mut c = Client::connect(s.addr(), ClientOptions::default()).unwrap();
        let o = RunOptions {
            period,
            ..opts(Policy::Lossless, 3)
        };
        run(&mut c, &o, &mut |_| {}).unwrap()
    };
    assert_eq!(lossless_slow.deadline_hit_fraction, Some(0.0));
    // Without a period, within a stall budget: on this link only the sparsest levels
    // keep the multiply from waiting.
    let budget = {
        let (_, s) = host(Some(Trace::constant(0.0015).unwrap()));
        let mut c = Client::connect(s.addr(), ClientOptions::default()).unwrap();
        let o = RunOptions {
            stall_budget: 0.2,
            ..opts(Policy::Adaptive { max: None }, 4)
        };
        run(&mut c, &o, &mut |_| {}).unwrap()
    };
    assert_eq!(budget.deadline_hit_fraction, None);
    // Spending by error: a level per tensor; it still follows the link.
    let by_error = {
        let (_, s) = host(Some(Trace::constant(0.0015).unwrap()));
        let mut c = Client::connect(s.addr(), ClientOptions::default()).unwrap();
        let o = RunOptions {
            period,
            spend: sparsewire_link::controller::Spend::ByError,
            ..opts(Policy::Adaptive { max: None }, 10)
        };
        run(&mut c, &o, &mut |_| {}).unwrap()
    };
    assert!(mean(&by_error) >= 0.3, "{:?}", by_error.levels);
    assert!(by_error.deadline_hit_fraction.unwrap() >= 0.7);
    assert!(mean(&budget) >= 0.6, "{:?}", budget.levels);
    assert!(lossless_slow.stall_fraction > 0.5);
    let _ = LinkError::Disconnected;
}

#[test]
fn a_swire_is_served_from_its_stored_tiles() {
    use sparsewire_metadata::{Criterion, Pattern, Reconstruction, Sparsification};
    use sparsewire_sparse::{Mask, SparseTile};
    // The model as a stream with odd tile rows, plus a tensor stored sparsified.
    let file = model();
    let enc = sparsewire_stream::EncodeOptions {
        tile_shape: Some(sparsewire_metadata::TileShape {
            rows: 37,
            cols: 1024,
        }),
        ..Default::default()
    };
    let mut w = sparsewire_stream::Writer::new(Vec::new(), enc).unwrap();
    for t in &file.tensors {
        w.add(t.as_ref()).unwrap();
    }
    let sp = Tensor::from_f32("l3.weight", vec![50, 64], &values(50 * 64, 9));
    let keep: Vec<bool> = (0..50 * 64).map(|i| i % 3 != 0).collect();
    let tile =
        SparseTile::from_dense(50, 64, Dtype::F32, &sp.data, Mask::from_bools(&keep)).unwrap();
    let sparse = sparsewire_stream::SparseTensor {
        tile,
        info: Sparsification::new(Criterion::Magnitude, Pattern::Unstructured, 1.0 / 3.0),
        reconstruction: Reconstruction::Zero,
    };
    w.add_sparse("l3.weight", &[50, 64], &sparse).unwrap();
    let stream = w.finish(vec![]).unwrap().0;
    let reader = sparsewire_stream::Reader::new(&stream[..]).unwrap();
    let m = Arc::new(HostModel::from_stream(&reader, &HostOptions::default()).unwrap());
    let info = &m.manifest.tensors[m.manifest.tensor_index("l0.weight").unwrap()];
    assert_eq!((info.rows_per_tile, info.tiles), (37, 17));
    // Level 0 is the stored row block, byte for byte; the sparser levels are coded.
    for (t, name) in m.manifest.tensors.iter().map(|t| &t.name).enumerate() {
        let st = reader.tensor_index(name).unwrap();
        for k in 0..m.manifest.tensors[t].tiles {
            let p = m.payload(t as u32, k, 0).unwrap();
            assert_eq!(p[..], reader.row_block_stream(st, k as u64).unwrap()[..]);
        }
    }
    let l3 = &m.manifest.tensors[m.manifest.tensor_index("l3.weight").unwrap()];
    assert!(!l3.sparsifiable && l3.rel_error.iter().all(|&e| e == 0.0));
    assert!(l3.bytes[0].iter().all(|&b| b == l3.bytes[0][0]));
    assert!(info.bytes[0][2] < info.bytes[0][0]);
    let server = spawn(m.clone(), None);
    let mut c = Client::connect(server.addr(), ClientOptions::default()).unwrap();
    let o = RunOptions {
        schedule: ["l0.weight", "l1.weight", "l2.weight", "l3.weight"]
            .map(String::from)
            .to_vec(),
        ..opts(Policy::Lossless, 1)
    };
    let err = run(&mut c, &o, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("not a float matrix"), "{err}");
    let r = run(&mut c, &opts(Policy::Lossless, 1), &mut |_| {}).unwrap();
    assert_eq!(r.layers, ["l0.weight", "l1.weight", "l2.weight"]);
    // Lossless from stored tiles: the same bits as the whole stream's multiply.
    for (i, name) in r.layers.iter().enumerate() {
        let t = reader.tensor_index(name).unwrap();
        let o = exec::Options {
            threads: 1,
            ..exec::Options::default()
        };
        let y = exec::matmul(&reader, t, &r.inputs[i], &o).unwrap().0;
        assert_eq!(r.outputs[i], y, "{name}");
    }
    let r = run(&mut c, &opts(Policy::Fixed(0.5), 1), &mut |_| {}).unwrap();
    for (i, name) in r.layers.iter().enumerate() {
        assert_eq!(
            r.outputs[i],
            in_process(&m, name, 2, &r.inputs[i]),
            "{name}"
        );
    }
}
