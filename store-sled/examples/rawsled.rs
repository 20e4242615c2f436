use sled::transaction::{ConflictableTransactionError, Transactional};
use std::time::Instant;
fn main() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path().join("a"))
        .mode(sled::Mode::HighThroughput)
        .open()
        .unwrap();
    let t1 = db.open_tree("t1").unwrap();
    let t2 = db.open_tree("t2").unwrap();
    let n = 100_000u64;
    let v = vec![7u8; 150];
    let s = Instant::now();
    for c in 0..n / 1000 {
        let mut b = sled::Batch::default();
        for i in c * 1000..(c + 1) * 1000 {
            b.insert(&i.to_be_bytes(), v.clone());
        }
        t1.apply_batch(b).unwrap();
    }
    println!(
        "tree apply_batch: {:.0}/s",
        n as f64 / s.elapsed().as_secs_f64()
    );
    let s = Instant::now();
    for c in 0..n / 1000 {
        let mut b = sled::Batch::default();
        let mut b2 = sled::Batch::default();
        for i in c * 1000..(c + 1) * 1000 {
            b.insert(&i.to_be_bytes(), v.clone());
            let mut k = b"topic\0\x80\x00".to_vec();
            k.extend_from_slice(&i.to_be_bytes());
            b2.insert(k, vec![]);
        }
        [&t1, &t2][..]
            .transaction(|t| {
                t[0].apply_batch(&b)?;
                t[1].apply_batch(&b2)?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .unwrap();
    }
    println!(
        "txn 2 trees (per task 2 inserts): {:.0}/s",
        n as f64 / s.elapsed().as_secs_f64()
    );
    let t3 = db.open_tree("t3").unwrap();
    let s = Instant::now();
    for c in 0..n / 1000 {
        let mut b = sled::Batch::default();
        for i in c * 1000..(c + 1) * 1000 {
            b.insert(&i.to_be_bytes(), v.clone());
            let mut k = b"rtopic\0\x80\x00".to_vec();
            k.extend_from_slice(&i.to_be_bytes());
            b.insert(k, vec![]);
        }
        t3.apply_batch(b).unwrap();
    }
    println!(
        "one tree, 2 inserts/task: {:.0}/s",
        n as f64 / s.elapsed().as_secs_f64()
    );
    let s = Instant::now();
    for i in 0..n {
        t1.remove(&i.to_be_bytes()).unwrap();
    }
    println!("remove: {:.0}/s", n as f64 / s.elapsed().as_secs_f64());
}
