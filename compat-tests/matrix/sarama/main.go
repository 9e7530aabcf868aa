// Matrix scenario for sarama (Debian's golang-github-shopify-sarama-dev 1.22.1, built offline
// with GO111MODULE=off and GOPATH=/usr/share/gocode, see build.sh): ClusterAdmin.CreateTopic,
// AsyncProducer (keyed, headers, explicit timestamps; each codec; then Producer.Idempotent),
// Consumer.ConsumePartition from the oldest offset on all 6 partitions (no group).
// Scenario `subscribe` (first codec only, plain producer): sarama's ConsumerGroup (Consume with a
// ConsumerGroupHandler, MarkMessage; Consumer.Offsets.Initial=OffsetOldest) in a fresh group reads
// everything and commits on Close; ClusterAdmin.ListConsumerGroupOffsets must then show the end
// offsets, and a second ConsumerGroup of the group must claim all 6 partitions at the end offsets
// (ConsumerGroupClaim.InitialOffset) and read nothing.
// The records and the checks are the ones of ../common.py.
//
// Usage: sarama-matrix --bootstrap 127.0.0.1:PORT [--records N] [--codecs none,gzip,...] [--scenarios ...]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

const (
	client     = "sarama"
	partitions = 6
	keys       = 100
	pad        = "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij"
)

var codecs = map[string]sarama.CompressionCodec{
	"none":   sarama.CompressionNone,
	"gzip":   sarama.CompressionGZIP,
	"snappy": sarama.CompressionSnappy,
	"lz4":    sarama.CompressionLZ4,
	"zstd":   sarama.CompressionZSTD,
}

func keyOf(i int) string                 { return fmt.Sprintf("key-%d", i%keys) }
func valueOf(i int, codec string) string { return fmt.Sprintf("v%06d-%s-%s", i, codec, pad) }
func headersOf(i int, codec string) []sarama.RecordHeader {
	return []sarama.RecordHeader{{Key: []byte("idx"), Value: []byte(strconv.Itoa(i))}, {Key: []byte("codec"), Value: []byte(codec)}}
}

type got struct {
	partition int32
	offset    int64
	key       string
	value     string
	headers   []string // "k=v"
	ts        int64
}

func logf(format string, args ...interface{}) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func config(codec string, idempotent bool) *sarama.Config {
	c := sarama.NewConfig()
	c.ClientID = "weir-matrix-sarama"
	// The newest protocol level this sarama knows that matters here: record batches with
	// headers and timestamps (>= 0.11), idempotence; Produce is sent as v3, Fetch as v4.
	c.Version = sarama.V2_1_0_0
	c.Net.DialTimeout = 10 * time.Second
	c.Metadata.Retry.Max = 10
	c.Metadata.Retry.Backoff = 200 * time.Millisecond
	c.Producer.Compression = codecs[codec]
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Return.Errors = true
	c.Producer.Flush.Frequency = 20 * time.Millisecond
	c.Producer.Retry.Max = 5
	c.Producer.Partitioner = sarama.NewHashPartitioner
	if idempotent {
		c.Producer.Idempotent = true
		c.Net.MaxOpenRequests = 1
	}
	c.Consumer.Return.Errors = true
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	return c
}

func createTopic(bootstrap, topic string) error {
	admin, err := sarama.NewClusterAdmin([]string{bootstrap}, config("none", false))
	if err != nil {
		return fmt.Errorf("NewClusterAdmin: %v", err)
	}
	defer admin.Close()
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false); err != nil {
		return fmt.Errorf("CreateTopic: %v", err)
	}
	return nil
}

// Set when the broker refused a codec with UNSUPPORTED_COMPRESSION_TYPE, as Apache Kafka does
// for zstd in Produce < v7 (sarama 1.22 sends v3) and in Fetch < v10 from a topic whose
// compression.type is zstd: the cell is then `unsupported`, not `fail`.
var unsupportedCompression bool

func produce(cl sarama.Client, topic string, n int, codec string, baseTs int64) error {
	p, err := sarama.NewAsyncProducerFromClient(cl)
	if err != nil {
		return fmt.Errorf("NewAsyncProducer: %v", err)
	}
	done := make(chan []string)
	go func() {
		var errs []string
		ok := 0
		for ok+len(errs) < n {
			select {
			case <-p.Successes():
				ok++
			case e := <-p.Errors():
				if e.Err == sarama.ErrUnsupportedCompressionType {
					unsupportedCompression = true
				}
				if len(errs) < 3 {
					errs = append(errs, e.Error())
				} else {
					errs = append(errs, "")
				}
			case <-time.After(60 * time.Second):
				errs = append(errs, fmt.Sprintf("timed out with %d of %d acknowledged", ok, n))
				done <- errs
				return
			}
		}
		done <- errs
	}()
	for i := 0; i < n; i++ {
		p.Input() <- &sarama.ProducerMessage{
			Topic:     topic,
			Key:       sarama.StringEncoder(keyOf(i)),
			Value:     sarama.StringEncoder(valueOf(i, codec)),
			Headers:   headersOf(i, codec),
			Timestamp: time.Unix(0, (baseTs+int64(i))*int64(time.Millisecond)),
		}
	}
	errs := <-done
	p.AsyncClose()
	for range p.Successes() {
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d produce errors: %s", len(errs), strings.Join(errs[:min(3, len(errs))], "; "))
	}
	return nil
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}

func consume(cl sarama.Client, topic string, n int) ([]got, error) {
	cons, err := sarama.NewConsumerFromClient(cl)
	if err != nil {
		return nil, fmt.Errorf("NewConsumer: %v", err)
	}
	defer cons.Close()
	var out []got
	for p := int32(0); p < partitions; p++ {
		end, err := cl.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return out, fmt.Errorf("GetOffset(%d): %v", p, err)
		}
		if end == 0 {
			continue
		}
		pc, err := cons.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			return out, fmt.Errorf("ConsumePartition(%d): %v", p, err)
		}
		deadline := time.After(60 * time.Second)
	loop:
		for {
			select {
			case m := <-pc.Messages():
				g := got{partition: m.Partition, offset: m.Offset, key: string(m.Key), value: string(m.Value),
					ts: m.Timestamp.UnixNano() / int64(time.Millisecond)}
				for _, h := range m.Headers {
					g.headers = append(g.headers, string(h.Key)+"="+string(h.Value))
				}
				out = append(out, g)
				if m.Offset+1 >= end {
					break loop
				}
			case e := <-pc.Errors():
				if e.Err == sarama.ErrUnsupportedCompressionType {
					unsupportedCompression = true
				}
				pc.Close()
				return out, fmt.Errorf("partition %d: %v", p, e.Err)
			case <-deadline:
				pc.Close()
				return out, fmt.Errorf("partition %d: timed out before offset %d", p, end)
			}
		}
		pc.Close()
	}
	return out, nil
}

func check(recs []got, n int, codec string, baseTs int64) []string {
	var problems []string
	add := func(format string, args ...interface{}) {
		if len(problems) < 8 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	if len(recs) != n {
		add("count %d != %d", len(recs), n)
	}
	seen := map[int]bool{}
	keyPart := map[string]int32{}
	split := map[string]bool{}
	for _, r := range recs {
		i, err := strconv.Atoi(r.value[1:min(7, len(r.value))])
		if err != nil || len(r.value) < 7 {
			add("unparsable value %q", r.value)
			continue
		}
		if seen[i] {
			add("record %d twice", i)
			continue
		}
		seen[i] = true
		if r.value != valueOf(i, codec) {
			add("record %d: value %q", i, r.value)
		}
		if r.key != keyOf(i) {
			add("record %d: key %q", i, r.key)
		}
		want := []string{"idx=" + strconv.Itoa(i), "codec=" + codec}
		if strings.Join(r.headers, ",") != strings.Join(want, ",") {
			add("record %d: headers %v != %v", i, r.headers, want)
		}
		if r.ts != baseTs+int64(i) {
			add("record %d: timestamp %d != %d", i, r.ts, baseTs+int64(i))
		}
		if p, ok := keyPart[r.key]; ok && p != r.partition && !split[r.key] {
			split[r.key] = true
			add("key %s in partitions %d and %d", r.key, p, r.partition)
		} else if !ok {
			keyPart[r.key] = r.partition
		}
	}
	missing := 0
	for i := 0; i < n; i++ {
		if !seen[i] {
			missing++
		}
	}
	if missing > 0 {
		add("%d records missing", missing)
	}
	byPart := map[int32][]got{}
	for _, r := range recs {
		byPart[r.partition] = append(byPart[r.partition], r)
	}
	for p, rs := range byPart {
		if !sort.SliceIsSorted(rs, func(a, b int) bool { return rs[a].offset < rs[b].offset }) {
			add("partition %d: offsets not increasing as consumed", p)
		}
		last := map[string]int{}
		for _, r := range rs {
			i, _ := strconv.Atoi(r.value[1:min(7, len(r.value))])
			if l, ok := last[r.key]; ok && l >= i {
				add("partition %d: key %s record %d after %d", p, r.key, i, l)
			}
			last[r.key] = i
		}
	}
	return problems
}

// groupHandler collects what a ConsumerGroup session reads and the claims it got.
type groupHandler struct {
	mu      sync.Mutex
	recs    []got
	initial map[int32]int64 // partition -> ConsumerGroupClaim.InitialOffset of the last session
	ready   chan struct{}   // closed at the first Setup with all partitions claimed
	once    sync.Once
}

func (h *groupHandler) Setup(s sarama.ConsumerGroupSession) error {
	for _, ps := range s.Claims() {
		if len(ps) == partitions {
			h.once.Do(func() { close(h.ready) })
		}
	}
	return nil
}
func (h *groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *groupHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	h.mu.Lock()
	h.initial[c.Partition()] = c.InitialOffset()
	h.mu.Unlock()
	for m := range c.Messages() {
		g := got{partition: m.Partition, offset: m.Offset, key: string(m.Key), value: string(m.Value),
			ts: m.Timestamp.UnixNano() / int64(time.Millisecond)}
		for _, hd := range m.Headers {
			g.headers = append(g.headers, string(hd.Key)+"="+string(hd.Value))
		}
		h.mu.Lock()
		h.recs = append(h.recs, g)
		h.mu.Unlock()
		s.MarkMessage(m, "")
	}
	return nil
}

// runGroup runs one ConsumerGroup member of `group` until done(handler) or the timeout, then
// closes it (final commit of the marked offsets, LeaveGroup).
func runGroup(bootstrap, group, topic string, done func(h *groupHandler) bool, timeout time.Duration) (*groupHandler, error) {
	cfg := config("none", false)
	cfg.Consumer.Group.Session.Timeout = 10 * time.Second
	cfg.Consumer.Group.Heartbeat.Interval = time.Second
	cfg.Consumer.Offsets.CommitInterval = 200 * time.Millisecond
	// sarama 1.22 commits with OffsetCommit v1 unless a retention is set, then v2; Kafka 4 (KIP-896)
	// and weir serve v2+ only, and close the connection on v1. Kafka's default retention, 7 days.
	cfg.Consumer.Offsets.Retention = 7 * 24 * time.Hour
	cg, err := sarama.NewConsumerGroup([]string{bootstrap}, group, cfg)
	if err != nil {
		return nil, fmt.Errorf("NewConsumerGroup: %v", err)
	}
	h := &groupHandler{initial: map[int32]int64{}, ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	var errs []string
	var emu sync.Mutex
	go func() {
		for e := range cg.Errors() {
			emu.Lock()
			errs = append(errs, e.Error())
			emu.Unlock()
		}
	}()
	stopped := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{topic}, h); err != nil {
				stopped <- err
				return
			}
		}
		stopped <- nil
	}()
	deadline := time.Now().Add(timeout)
	var result error
	for {
		h.mu.Lock()
		ok := done(h)
		h.mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			h.mu.Lock()
			result = fmt.Errorf("group consumer after %v: claims %v, %d records", timeout, h.initial, len(h.recs))
			h.mu.Unlock()
			break
		}
		select {
		case err := <-stopped:
			cancel()
			cg.Close()
			return h, fmt.Errorf("Consume: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	cancel()
	if err := <-stopped; err != nil && result == nil {
		result = fmt.Errorf("Consume: %v", err)
	}
	if err := cg.Close(); err != nil && result == nil {
		result = fmt.Errorf("ConsumerGroup.Close: %v", err)
	}
	emu.Lock()
	defer emu.Unlock()
	if len(errs) > 0 && result == nil {
		result = fmt.Errorf("consumer group errors: %s", strings.Join(errs[:min(3, len(errs))], "; "))
	}
	return h, result
}

func subscribeCell(bootstrap, codec string, n int) []string {
	topic := fmt.Sprintf("matrix-sarama-subscribe-%s-%d-%d", codec, os.Getpid(), time.Now().UnixNano()%1000000)
	group := "group-" + topic
	baseTs := (time.Now().Unix() - 3600) * 1000
	if err := createTopic(bootstrap, topic); err != nil {
		return []string{err.Error()}
	}
	cl, err := sarama.NewClient([]string{bootstrap}, config(codec, false))
	if err != nil {
		return []string{fmt.Sprintf("NewClient: %v", err)}
	}
	defer cl.Close()
	if err := produce(cl, topic, n, codec, baseTs); err != nil {
		return []string{err.Error()}
	}
	ends := map[int32]int64{}
	for p := int32(0); p < partitions; p++ {
		if ends[p], err = cl.GetOffset(topic, p, sarama.OffsetNewest); err != nil {
			return []string{fmt.Sprintf("GetOffset(%d): %v", p, err)}
		}
	}
	h, err := runGroup(bootstrap, group, topic, func(h *groupHandler) bool { return len(h.recs) >= n }, 60*time.Second)
	var problems []string
	if err != nil {
		problems = append(problems, err.Error())
	}
	// ConsumeClaim runs one goroutine per partition: restore per-partition order for the check.
	sort.SliceStable(h.recs, func(a, b int) bool { return h.recs[a].partition < h.recs[b].partition })
	problems = append(problems, check(h.recs, n, codec, baseTs)...)

	admin, err := sarama.NewClusterAdmin([]string{bootstrap}, config("none", false))
	if err != nil {
		return append(problems, fmt.Sprintf("NewClusterAdmin: %v", err))
	}
	defer admin.Close()
	ps := []int32{0, 1, 2, 3, 4, 5}
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: ps})
	if err != nil {
		problems = append(problems, fmt.Sprintf("ListConsumerGroupOffsets: %v", err))
	} else {
		var bad []string
		for _, p := range ps {
			b := resp.GetBlock(topic, p)
			if b == nil || b.Err != sarama.ErrNoError || b.Offset != ends[p] {
				bad = append(bad, fmt.Sprintf("p%d: %+v != end %d", p, b, ends[p]))
			}
		}
		if len(bad) > 0 {
			problems = append(problems, "committed offsets: "+strings.Join(bad, ", "))
		}
	}

	// A second member of the group: claims all partitions at the committed (= end) offsets, reads nothing.
	var claimedAt time.Time
	h2, err := runGroup(bootstrap, group, topic, func(h *groupHandler) bool {
		if len(h.initial) < partitions {
			return false
		}
		if claimedAt.IsZero() {
			claimedAt = time.Now()
		}
		return time.Since(claimedAt) > 1500*time.Millisecond
	}, 30*time.Second)
	if err != nil {
		problems = append(problems, "second consumer: "+err.Error())
	}
	if len(h2.recs) > 0 {
		problems = append(problems, fmt.Sprintf("second consumer of the group read %d records (first p%d@%d)",
			len(h2.recs), h2.recs[0].partition, h2.recs[0].offset))
	}
	for p, o := range h2.initial {
		if o != ends[p] {
			problems = append(problems, fmt.Sprintf("second consumer: p%d claimed at offset %d, not the committed %d", p, o, ends[p]))
		}
	}
	return problems
}

func cell(bootstrap, scenario, codec string, n int) []string {
	if scenario == "subscribe" {
		return subscribeCell(bootstrap, codec, n)
	}
	topic := fmt.Sprintf("matrix-sarama-%s-%s-%d-%d", scenario, codec, os.Getpid(), time.Now().UnixNano()%1000000)
	baseTs := (time.Now().Unix() - 3600) * 1000
	if err := createTopic(bootstrap, topic); err != nil {
		return []string{err.Error()}
	}
	cl, err := sarama.NewClient([]string{bootstrap}, config(codec, scenario == "idempotent"))
	if err != nil {
		return []string{fmt.Sprintf("NewClient: %v", err)}
	}
	defer cl.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_ = cl.RefreshMetadata(topic)
		ps, _ := cl.Partitions(topic)
		if len(ps) == partitions {
			break
		}
		if time.Now().After(deadline) {
			return []string{fmt.Sprintf("%s: %d partitions in metadata, not %d", topic, len(ps), partitions)}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := produce(cl, topic, n, codec, baseTs); err != nil {
		return []string{err.Error()}
	}
	recs, err := consume(cl, topic, n)
	problems := check(recs, n, codec, baseTs)
	if err != nil {
		problems = append([]string{err.Error()}, problems...)
	}
	return problems
}

func main() {
	bootstrap := flag.String("bootstrap", "", "host:port of a weir (127.0.0.1)")
	records := flag.Int("records", 10000, "records per (scenario, codec)")
	codecList := flag.String("codecs", "none,gzip,snappy,lz4,zstd", "")
	scenarioList := flag.String("scenarios", "produce-consume,idempotent,subscribe", "")
	flag.Parse()
	if *bootstrap == "" {
		logf("usage: sarama-matrix --bootstrap host:port")
		os.Exit(64)
	}
	if os.Getenv("SARAMA_DEBUG") != "" {
		sarama.Logger = log.New(os.Stderr, "[sarama] ", log.Lmicroseconds)
	}
	failed := false
	for _, scenario := range strings.Split(*scenarioList, ",") {
		codecs := strings.Split(*codecList, ",")
		if scenario == "subscribe" {
			codecs = codecs[:1] // the first codec only
		}
		for _, codec := range codecs {
			t0 := time.Now()
			unsupportedCompression = false
			problems := cell(*bootstrap, scenario, codec, *records)
			status, detail := "pass", "-"
			if len(problems) > 0 && codec == "zstd" && unsupportedCompression {
				status, detail = "unsupported", "broker refused zstd in Produce v3 with UNSUPPORTED_COMPRESSION_TYPE, as Kafka does below Produce v7"
			} else if len(problems) > 0 {
				status, detail = "fail", strings.Join(problems, "; ")
				failed = true
			}
			detail = strings.Join(strings.Fields(detail), " ")
			if len(detail) > 600 {
				detail = detail[:600]
			}
			fmt.Printf("RESULT client=%s scenario=%s codec=%s status=%s records=%d secs=%.1f detail=%s\n",
				client, scenario, codec, status, *records, time.Since(t0).Seconds(), detail)
		}
	}
	if failed {
		os.Exit(1)
	}
}
