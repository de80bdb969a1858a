//! The data-path algorithms must not allocate per pick once warmed up. A counting global
//! allocator (in this test binary only) checks it; the count is per thread, so tests running
//! in parallel do not disturb each other.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr};

use switchyard_balance::{build, Algorithm, PickRequest, ServerView};
use switchyard_config::{Balance, HashMethod, HashType};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn servers() -> Vec<ServerView> {
    (0..8)
        .map(|i| ServerView {
            weight: i % 4 + 1,
            conns: i * 3,
            eligible: i != 5,
        })
        .collect()
}

fn assert_no_alloc(alg: &dyn Algorithm, client: Option<IpAddr>) {
    let mut views = servers();
    let request = |v: &[ServerView]| {
        alg.pick(&PickRequest {
            servers: v,
            generation: 1,
            client,
            key: None,
        })
    };
    let mut before = 0;
    // The first pass is a warm-up: the first pick builds state, the thread RNG initialises on
    // first use, and static-rr may rebuild its map once per server it had not seen pickable.
    for round in 0..2_000u32 {
        if round == 1_000 {
            before = allocations();
        }
        // Connection counts and momentary fullness change between picks, as in production.
        let i = (round % 8) as usize;
        views[i].conns = round % 17;
        views[i].eligible = round % 3 != 0 || i == 0;
        assert!(request(&views).is_some());
    }
    assert_eq!(
        allocations() - before,
        0,
        "{alg:?} allocated on the pick path"
    );
}

#[test]
fn hot_paths_do_not_allocate() {
    let client = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
    let consistent = HashType {
        method: HashMethod::Consistent,
        ..HashType::default()
    };
    let cases = [
        (Balance::RoundRobin, HashType::default(), None),
        (Balance::StaticRr, HashType::default(), None),
        (Balance::LeastConn, HashType::default(), None),
        (Balance::First, HashType::default(), None),
        (Balance::Random { draws: 2 }, HashType::default(), None),
        (Balance::Source, HashType::default(), client),
        (Balance::Source, consistent, client),
        (Balance::Source, consistent, None),
    ];
    for (balance, hash_type, client) in cases {
        let alg = build(&balance, &hash_type);
        assert_no_alloc(alg.as_ref(), client);
    }
}
