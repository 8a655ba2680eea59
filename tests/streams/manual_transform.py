def create_vertex(vertex_id):
    return ("CREATE (:Node {id: $id})", {"id": vertex_id})


def create_edge(from_id, to_id):
    return (
        "MATCH (n:Node {id: $from_id}), (m:Node {id: $to_id}) CREATE (n)-[:Edge]->(m)",
        {"from_id": from_id, "to_id": to_id},
    )


def stream(batch):
    result = []
    for item in batch:
        message = item.decode("utf-8").split()
        if len(message) == 1:
            result.append(create_vertex(message[0]))
        elif len(message) == 2:
            result.append(create_edge(message[0], message[1]))
    return result
