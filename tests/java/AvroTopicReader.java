// Reads the platform's topics with Apache Avro's Java library: the proof that what the platform
// writes is standard Avro single-object encoding, readable without adp's own code.
//
//   java -cp <avro + kafka-clients jars> AvroTopicReader.java BOOTSTRAP SCHEMA_DIR TOPIC...
//
// Parses SCHEMA_DIR/{Task,StepEvent,Trajectory}.avsc as the reader schemas and every
// SCHEMA_DIR/history/v*/ folder as known writer schemas, consumes each topic from the beginning
// to its current end, and prints one JSON line per record: topic, partition, offset and either
// "record" (GenericRecord's JSON) or "error" (why BinaryMessageDecoder refused it).
import java.io.File;
import java.time.Duration;
import java.util.*;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class AvroTopicReader {
    static final String[] FILES = {"Task.avsc", "StepEvent.avsc", "Trajectory.avsc"};

    static Map<String, Schema> parse(File dir) throws Exception {
        Schema.Parser parser = new Schema.Parser();  // one parser: later files use earlier types
        Map<String, Schema> out = new LinkedHashMap<>();
        for (String f : FILES) {
            Schema s = parser.parse(new File(dir, f));
            out.put(s.getFullName(), s);
        }
        return out;
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        File dir = new File(args[1]);
        Map<String, Schema> current = parse(dir);
        List<Map<String, Schema>> history = new ArrayList<>();
        File[] versions = new File(dir, "history").listFiles(File::isDirectory);
        for (File v : versions == null ? new File[0] : versions) history.add(parse(v));

        Map<String, BinaryMessageDecoder<GenericRecord>> decoders = new HashMap<>();
        for (Schema reader : current.values()) {
            BinaryMessageDecoder<GenericRecord> d = new BinaryMessageDecoder<>(GenericData.get(), reader);
            for (Map<String, Schema> old : history) d.addSchema(old.get(reader.getFullName()));
            decoders.put(reader.getFullName(), d);
            System.err.printf("%s fingerprint %016x%n", reader.getFullName(),
                              Long.reverseBytes(SchemaNormalization.parsingFingerprint64(reader)));
        }

        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("key.deserializer", ByteArrayDeserializer.class.getName());
        props.put("value.deserializer", ByteArrayDeserializer.class.getName());
        props.put("enable.auto.commit", "false");
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            for (int i = 2; i < args.length; i++) {
                String topic = args[i];
                String schema = topic.startsWith("adp.tasks.") ? "adp.Task"
                        : topic.equals("adp.steps") ? "adp.StepEvent" : "adp.Trajectory";
                BinaryMessageDecoder<GenericRecord> decoder = decoders.get(schema);
                List<TopicPartition> parts = new ArrayList<>();
                for (PartitionInfo p : consumer.partitionsFor(topic)) parts.add(new TopicPartition(topic, p.partition()));
                consumer.assign(parts);
                consumer.seekToBeginning(parts);
                Map<TopicPartition, Long> end = consumer.endOffsets(parts);
                while (parts.stream().anyMatch(tp -> consumer.position(tp) < end.get(tp))) {
                    for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofSeconds(1))) {
                        String head = String.format("{\"topic\":%s,\"partition\":%d,\"offset\":%d,",
                                                    quote(r.topic()), r.partition(), r.offset());
                        try {
                            GenericRecord rec = decoder.decode(r.value());
                            System.out.println(head + "\"record\":" + rec + "}");
                        } catch (Exception e) {
                            System.out.println(head + "\"error\":" + quote(e.toString()) + "}");
                        }
                    }
                }
            }
        }
    }
}
