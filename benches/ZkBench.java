// A load generator on Apache ZooKeeper's own Java client, so that zabd and ZooKeeper are also
// measured by a client that is not zabd's (benches/compare.sh compiles and runs it).
//
//   java ZkBench throughput CONNECT SESSIONS WINDOW set|get|create VALUE_BYTES WARMUP_S DURATION_S
//   java ZkBench failover CONNECT DURATION_S
//
// throughput: SESSIONS handles (session i uses the i-th server of CONNECT) each keep WINDOW
// asynchronous requests outstanding; prints one JSON line with ops/s and latency percentiles.
// failover: one handle does synchronous setData back to back, retrying through connection
// loss; prints the longest gap between two successful writes.
import org.apache.zookeeper.AsyncCallback;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

public class ZkBench {
    static final int KEYS = 1000;
    static final int SESSION_MS = 30000;

    public static void main(String[] a) throws Exception {
        if (a.length >= 3 && a[0].equals("failover")) {
            failover(a[1], Long.parseLong(a[2]));
        } else if (a.length == 8 && a[0].equals("throughput")) {
            throughput(a[1], Integer.parseInt(a[2]), Integer.parseInt(a[3]), a[4],
                    Integer.parseInt(a[5]), Double.parseDouble(a[6]), Double.parseDouble(a[7]));
        } else {
            System.err.println("usage: see the comment at the top of ZkBench.java");
            System.exit(2);
        }
    }

    static ZooKeeper connect(String connect) throws Exception {
        CountDownLatch up = new CountDownLatch(1);
        ZooKeeper zk = new ZooKeeper(connect, SESSION_MS, e -> {
            if (e.getState() == org.apache.zookeeper.Watcher.Event.KeeperState.SyncConnected) {
                up.countDown();
            }
        });
        if (!up.await(15, TimeUnit.SECONDS)) {
            throw new IllegalStateException("no connection to " + connect);
        }
        return zk;
    }

    static final class Session {
        final ZooKeeper zk;
        final long[] lat;
        int n;
        Session(ZooKeeper zk, int cap) { this.zk = zk; this.lat = new long[cap]; }
        void record(long ns) { if (n < lat.length) { lat[n++] = ns; } }
    }

    static void throughput(String connect, int sessions, int window, String op, int size,
                           double warmupS, double durationS) throws Exception {
        String[] servers = connect.split(",");
        String root = "/zkbench-" + ProcessHandle.current().pid();
        byte[] value = new byte[size];
        Arrays.fill(value, (byte) 'v');
        ZooKeeper control = connect(connect);
        control.create(root, new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        control.create(root + "/n", new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        for (int k = 0; k < KEYS; k++) {
            control.create(root + "/k" + k, value, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        }
        final long start = System.nanoTime();
        final long measureFrom = start + (long) (warmupS * 1e9);
        final long end = measureFrom + (long) (durationS * 1e9);
        final AtomicLong errors = new AtomicLong();
        final AtomicLong outstanding = new AtomicLong();
        List<Session> all = new ArrayList<>();
        int cap = (int) Math.min(20_000_000L / Math.max(1, sessions), 5_000_000L);
        for (int i = 0; i < sessions; i++) {
            all.add(new Session(connect(servers[i % servers.length]), cap));
        }
        for (Session s : all) {
            for (int w = 0; w < window; w++) {
                outstanding.incrementAndGet();
                issue(s, op, root, value, w, measureFrom, end, errors, outstanding);
            }
        }
        long deadline = end + 30_000_000_000L;
        while (outstanding.get() > 0 && System.nanoTime() < deadline) {
            Thread.sleep(10);
        }
        long total = 0;
        List<Long> lat = new ArrayList<>();
        for (Session s : all) {
            total += s.n;
            for (int i = 0; i < s.n; i++) { lat.add(s.lat[i]); }
        }
        long[] sorted = lat.stream().mapToLong(Long::longValue).sorted().toArray();
        double secs = (end - measureFrom) / 1e9;
        System.out.printf("{\"ops\":%d,\"ops_per_s\":%.1f,\"errors\":%d,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f}%n",
                total, total / secs, errors.get(), q(sorted, 0.5), q(sorted, 0.99), q(sorted, 0.999));
        for (Session s : all) { s.zk.close(); }
        try {
            for (String c : control.getChildren(root + "/n", false)) { control.delete(root + "/n/" + c, -1); }
            control.delete(root + "/n", -1);
            for (int k = 0; k < KEYS; k++) { control.delete(root + "/k" + k, -1); }
            control.delete(root, -1);
        } catch (KeeperException e) {
            System.err.println("cleanup: " + e);
        }
        control.close();
    }

    static double q(long[] sorted, double p) {
        if (sorted.length == 0) { return 0; }
        int i = (int) Math.min(sorted.length - 1, Math.floor(p * sorted.length));
        return sorted[i] / 1000.0;
    }

    static void issue(Session s, String op, String root, byte[] value, int seed, long measureFrom,
                      long end, AtomicLong errors, AtomicLong outstanding) {
        long sent = System.nanoTime();
        if (sent >= end) { outstanding.decrementAndGet(); return; }
        int key = Math.floorMod(seed * 7919 + (int) sent, KEYS);
        Runnable next = () -> issue(s, op, root, value, seed + 1, measureFrom, end, errors, outstanding);
        switch (op) {
            case "set":
                s.zk.setData(root + "/k" + key, value, -1, (AsyncCallback.StatCallback) (rc, p, c, st) -> {
                    done(s, rc, sent, measureFrom, end, errors); next.run(); }, null);
                break;
            case "get":
                s.zk.getData(root + "/k" + key, false, (AsyncCallback.DataCallback) (rc, p, c, d, st) -> {
                    done(s, rc, sent, measureFrom, end, errors); next.run(); }, null);
                break;
            case "create":
                s.zk.create(root + "/n/c", value, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT_SEQUENTIAL,
                        (AsyncCallback.StringCallback) (rc, p, c, name) -> {
                    done(s, rc, sent, measureFrom, end, errors); next.run(); }, null);
                break;
            default:
                throw new IllegalArgumentException("op " + op);
        }
    }

    static void done(Session s, int rc, long sent, long measureFrom, long end, AtomicLong errors) {
        long now = System.nanoTime();
        if (rc != 0) { errors.incrementAndGet(); return; }
        if (sent >= measureFrom && now <= end) { s.record(now - sent); }
    }

    static void failover(String connect, long durationS) throws Exception {
        ZooKeeper zk = connect(connect);
        String path = "/zkbench-failover-" + ProcessHandle.current().pid();
        zk.create(path, new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        byte[] value = new byte[100];
        long end = System.nanoTime() + durationS * 1_000_000_000L;
        long last = System.nanoTime();
        long maxGap = 0;
        long writes = 0;
        long failures = 0;
        while (System.nanoTime() < end) {
            try {
                zk.setData(path, value, -1);
                long now = System.nanoTime();
                maxGap = Math.max(maxGap, now - last);
                last = now;
                writes++;
            } catch (KeeperException.ConnectionLossException | KeeperException.SessionMovedException e) {
                failures++;
                Thread.sleep(1);
            }
        }
        try { zk.delete(path, -1); } catch (KeeperException e) { System.err.println("cleanup: " + e); }
        zk.close();
        System.out.printf("{\"max_gap_ms\":%.1f,\"writes\":%d,\"failures\":%d}%n", maxGap / 1e6, writes, failures);
    }
}
