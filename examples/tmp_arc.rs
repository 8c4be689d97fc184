use moesim::cache::{ArcPolicy, ExpertCache, Lookup};
fn main() {
    let ids = std::fs::read("/tmp/z/zipf64.ids").unwrap();
    let cap: u64 = std::env::args().nth(1).unwrap().parse().unwrap();
    let mut c = ExpertCache::new(cap, 65, Box::new(ArcPolicy::new(65, cap as u32)));
    let mut ev = Vec::new();
    let mut out = String::new();
    for &x in &ids {
        c.begin_event();
        let h = c.lookup(x as u32, 1, &[], &mut ev) == Lookup::Hit;
        out.push(if h { '1' } else { '0' });
    }
    println!("{out}");
}
